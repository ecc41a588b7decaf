-- keyauth_credentials: the key-auth plugin's entity (Kong 3.x
-- kong/plugins/key-auth/daos.lua); a missing key is generated.

local typedefs = require "moongate.schema.typedefs"

return {
    name = "keyauth_credentials",
    primary_key = { "id" },
    endpoint_key = "key",
    cache_key = { "key" },
    admin_api_name = "key-auths",
    admin_api_nested_name = "key-auth",
    fields = {
        { id = typedefs.uuid },
        { created_at = typedefs.auto_timestamp_s },
        { consumer = { type = "foreign", reference = "consumers",
                       required = true, on_delete = "cascade" } },
        { key = { type = "string", required = false, unique = true,
                  auto = true, referenceable = true } },
        { ttl = { type = "integer" } },
        { tags = typedefs.tags },
    },
}
