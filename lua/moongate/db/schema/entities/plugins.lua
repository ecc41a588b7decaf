-- plugins: Kong 3.x `plugins` entity.  Each plugin's own schema.lua is
-- merged into these fields by moongate.schema.new_plugin (config,
-- protocols, the scope fields it forbids); this table is what the DAO
-- uses for everything that does not depend on the plugin: the foreign
-- keys, the unique scope (cache_key) and validation of a plugin whose
-- name is unknown.

local typedefs = require "moongate.schema.typedefs"

local null = require("moongate.schema").null

return {
    name = "plugins",
    primary_key = { "id" },
    endpoint_key = "instance_name",
    cache_key = { "name", "route", "service", "consumer" },
    fields = {
        { id = typedefs.uuid },
        { name = { type = "string", required = true } },
        { instance_name = typedefs.utf8_name },
        { created_at = typedefs.auto_timestamp_s },
        { updated_at = typedefs.auto_timestamp_s },
        { route = { type = "foreign", reference = "routes",
                    default = null, on_delete = "cascade" } },
        { service = { type = "foreign", reference = "services",
                      default = null, on_delete = "cascade" } },
        { consumer = { type = "foreign", reference = "consumers",
                       default = null, on_delete = "cascade" } },
        { config = { type = "record", fields = {} } },
        { protocols = typedefs.protocols },
        { enabled = { type = "boolean", default = true } },
        { tags = typedefs.tags },
    },
}
