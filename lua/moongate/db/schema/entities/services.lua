-- services: Kong 3.x `services` entity (kong/db/schema/entities/
-- services.lua): fields, defaults, the protocol rules and the `url`
-- shorthand that expands into protocol/host/port/path.

local typedefs = require "moongate.schema.typedefs"

local null = require("moongate.schema").null
local tonumber = tonumber
local match = string.match

local nonzero_timeout = require("moongate.schema").define(
    typedefs.timeout { between = { 1, 2 ^ 31 - 2 } })

-- "https://example.com:8443/v1" -> protocol, host, port, path (Kong's
-- rule: the scheme's default port when none is given)
local function expand_url(url)
    local scheme, rest = match(url, "^([%a][%w+.-]*)://(.*)$")
    if not scheme then
        return { protocol = null, host = null, port = null, path = null }
    end
    local authority, path = match(rest, "^([^/?#]*)([^?#]*)")
    authority = authority:gsub("^.*@", "")
    local host, port = match(authority, "^(%[[^%]]*%])(.*)$")
    if not host then
        host, port = match(authority, "^([^:]*)(.*)$")
    end
    port = tonumber(match(port or "", "^:(%d+)$"))
    if not port then
        port = (scheme == "http" and 80) or (scheme == "https" and 443) or
               null
    end
    return {
        protocol = scheme,
        host = host ~= "" and host or null,
        port = port,
        path = path ~= "" and path or null,
    }
end

local HTTPS_ONLY = { "https", "tls" }

local function https_only(field)
    return { conditional = {
        if_field = "protocol", if_match = { not_one_of = HTTPS_ONLY },
        then_field = field, then_match = { eq = null },
    } }
end

return {
    name = "services",
    primary_key = { "id" },
    endpoint_key = "name",
    fields = {
        { id = typedefs.uuid },
        { created_at = typedefs.auto_timestamp_s },
        { updated_at = typedefs.auto_timestamp_s },
        { name = typedefs.utf8_name },
        { retries = { type = "integer", default = 5,
                      between = { 0, 32767 } } },
        { protocol = typedefs.protocol { required = true,
                                         default = "http" } },
        { host = typedefs.host { required = true } },
        { port = typedefs.port { required = true, default = 80 } },
        { path = typedefs.path },
        { connect_timeout = nonzero_timeout { default = 60000 } },
        { write_timeout = nonzero_timeout { default = 60000 } },
        { read_timeout = nonzero_timeout { default = 60000 } },
        { tags = typedefs.tags },
        { client_certificate = { type = "foreign",
                                 reference = "certificates" } },
        { tls_verify = { type = "boolean" } },
        { tls_verify_depth = { type = "integer", default = null,
                               between = { 0, 64 } } },
        { ca_certificates = { type = "array",
                              elements = { type = "string", uuid = true } } },
        { enabled = { type = "boolean", required = true, default = true } },
    },
    entity_checks = {
        { conditional = {
            if_field = "protocol",
            if_match = { one_of = { "tcp", "tls", "udp", "grpc", "grpcs" } },
            then_field = "path", then_match = { eq = null },
        } },
        https_only("client_certificate"),
        https_only("tls_verify"),
        https_only("tls_verify_depth"),
        https_only("ca_certificates"),
    },
    shorthand_fields = {
        { url = { type = "string", func = expand_url } },
    },
}
