; Rust definitions. A function inside an `impl` or `trait` is a method.
(function_item name: (identifier) @name) @definition.function
; Trait method declarations without a body.
(function_signature_item name: (identifier) @name) @definition.function
(struct_item name: (type_identifier) @name) @definition.struct
(union_item name: (type_identifier) @name) @definition.struct
(enum_item name: (type_identifier) @name) @definition.enum
(trait_item name: (type_identifier) @name) @definition.trait
; impl blocks: the unit's name is the (normalised) self type, the symbol `<Type as Trait>` or `Type`.
(impl_item trait: (_) @trait type: (_) @receiver) @definition.impl
(impl_item !trait type: (_) @receiver) @definition.impl
; Inline modules only (`mod foo;` declares a file, it does not contain items).
(mod_item name: (identifier) @name body: (declaration_list)) @definition.module
