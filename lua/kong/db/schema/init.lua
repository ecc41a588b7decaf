-- kong.db.schema -- compatibility name for moongate.schema, so that Kong
-- plugin schema files (`require "kong.db.schema"`) load unchanged.
return require "moongate.schema"
