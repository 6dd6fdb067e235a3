; Ruby definitions. `@static` marks singleton methods (`def self.x`, `class << self`).
(singleton_class
  value: (self) @static
  (body_statement (method name: (_) @name) @definition.method))
(method name: (_) @name) @definition.method
(singleton_method object: (_) @static name: (_) @name) @definition.method
(class name: (_) @name) @definition.class
(module name: (_) @name) @definition.module
