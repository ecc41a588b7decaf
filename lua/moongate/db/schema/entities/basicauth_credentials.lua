-- basicauth_credentials: the basic-auth plugin's entity (Kong 3.x
-- kong/plugins/basic-auth/daos.lua).  The password is never stored:
-- `hash` turns it into Kong's sha1(password .. consumer_id) in hex
-- before the entity reaches the store.

local typedefs = require "moongate.schema.typedefs"
local digest = require "moongate.digest"

return {
    name = "basicauth_credentials",
    primary_key = { "id" },
    endpoint_key = "username",
    cache_key = { "username" },
    admin_api_name = "basic-auths",
    admin_api_nested_name = "basic-auth",
    fields = {
        { id = typedefs.uuid },
        { created_at = typedefs.auto_timestamp_s },
        { consumer = { type = "foreign", reference = "consumers",
                       required = true, on_delete = "cascade" } },
        { username = { type = "string", required = true, unique = true } },
        { password = { type = "string", required = true,
                       encrypted = true } },
        { tags = typedefs.tags },
    },
    -- called by the DAO on insert/upsert/update with the password the
    -- operator sent (not with the stored hash)
    hash_password = function(password, consumer_id)
        return digest.tohex(digest.sha1_bin(password .. consumer_id))
    end,
}
