-- acls: the acl plugin's entity (Kong 3.x kong/plugins/acl/daos.lua): a
-- consumer's membership of a group, unique per (consumer, group).

local typedefs = require "moongate.schema.typedefs"

return {
    name = "acls",
    primary_key = { "id" },
    cache_key = { "consumer", "group" },
    admin_api_name = "acls",
    fields = {
        { id = typedefs.uuid },
        { created_at = typedefs.auto_timestamp_s },
        { consumer = { type = "foreign", reference = "consumers",
                       required = true, on_delete = "cascade" } },
        { group = { type = "string", required = true } },
        { tags = typedefs.tags },
    },
}
