; Python definitions. Functions become methods when their nearest enclosing unit is a class.
(class_definition name: (identifier) @name) @definition.class
(function_definition name: (identifier) @name) @definition.function
