-- ca_certificates: Kong 3.x `ca_certificates` entity.  cert_digest is
-- Kong's unique SHA-256 of the certificate; it is kept when given (the
-- Lua runtime has no SHA-256 yet, so it is not computed here).

local typedefs = require "moongate.schema.typedefs"

return {
    name = "ca_certificates",
    primary_key = { "id" },
    fields = {
        { id = typedefs.uuid },
        { created_at = typedefs.auto_timestamp_s },
        { updated_at = typedefs.auto_timestamp_s },
        { cert = typedefs.certificate { required = true } },
        { cert_digest = { type = "string", unique = true } },
        { tags = typedefs.tags },
    },
}
