-- jwt_secrets: the jwt plugin's entity (Kong 3.x kong/plugins/jwt/
-- daos.lua); key and secret are generated when missing, RSA/EC
-- algorithms need a public key.

local typedefs = require "moongate.schema.typedefs"

local ALGORITHMS = { "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                     "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
                     "EdDSA" }

return {
    name = "jwt_secrets",
    primary_key = { "id" },
    endpoint_key = "key",
    cache_key = { "key" },
    admin_api_name = "jwts",
    admin_api_nested_name = "jwt",
    fields = {
        { id = typedefs.uuid },
        { created_at = typedefs.auto_timestamp_s },
        { consumer = { type = "foreign", reference = "consumers",
                       required = true, on_delete = "cascade" } },
        { key = { type = "string", required = false, unique = true,
                  auto = true } },
        { secret = { type = "string", auto = true } },
        { rsa_public_key = { type = "string" } },
        { algorithm = { type = "string", default = "HS256",
                        one_of = ALGORITHMS } },
        { tags = typedefs.tags },
    },
    entity_checks = {
        { conditional = {
            if_field = "algorithm",
            if_match = { not_one_of = { "HS256", "HS384", "HS512" } },
            then_field = "rsa_public_key",
            then_match = { required = true },
        } },
    },
}
