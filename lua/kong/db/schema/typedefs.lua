-- kong.db.schema.typedefs -- compatibility name for
-- moongate.schema.typedefs, so that Kong plugin schema files
-- (`require "kong.db.schema.typedefs"`) load unchanged.
return require "moongate.schema.typedefs"
