-- certificates: Kong 3.x `certificates` entity (PEM pairs, with an
-- optional alternate pair for the other key type).

local typedefs = require "moongate.schema.typedefs"

return {
    name = "certificates",
    primary_key = { "id" },
    fields = {
        { id = typedefs.uuid },
        { created_at = typedefs.auto_timestamp_s },
        { updated_at = typedefs.auto_timestamp_s },
        { cert = typedefs.certificate { required = true,
                                        referenceable = true } },
        { key = typedefs.key { required = true, referenceable = true } },
        { cert_alt = typedefs.certificate { required = false,
                                            referenceable = true } },
        { key_alt = typedefs.key { required = false,
                                   referenceable = true } },
        { tags = typedefs.tags },
    },
    entity_checks = {
        { mutually_required = { "cert_alt", "key_alt" } },
    },
}
