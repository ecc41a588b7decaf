-- upstreams: Kong 3.x `upstreams` entity, with Kong's healthchecks
-- defaults (a record filled in full on every read).

local typedefs = require "moongate.schema.typedefs"

local function statuses(default)
    return { type = "array", default = default,
             elements = { type = "integer", between = { 100, 999 } } }
end

local function counter(default)
    return { type = "integer", default = default or 0,
             between = { 0, 255 } }
end

local interval = { type = "number", default = 0, between = { 0, 65535 } }

local active = { type = "record", fields = {
    { type = { type = "string", default = "http",
               one_of = { "tcp", "http", "https", "grpc", "grpcs" } } },
    { timeout = { type = "number", default = 1, between = { 0, 65535 } } },
    { concurrency = { type = "integer", default = 10,
                      between = { 1, 2 ^ 31 } } },
    { http_path = typedefs.path { default = "/" } },
    { https_sni = typedefs.sni },
    { https_verify_certificate = { type = "boolean", default = true } },
    { headers = { type = "map", keys = typedefs.header_name,
                  values = { type = "array",
                             elements = { type = "string" } } } },
    { healthy = { type = "record", fields = {
        { interval = interval },
        { http_statuses = statuses { 200, 302 } },
        { successes = counter() },
    } } },
    { unhealthy = { type = "record", fields = {
        { interval = interval },
        { http_statuses = statuses { 429, 404, 500, 501, 502, 503, 504,
                                     505 } },
        { tcp_failures = counter() },
        { timeouts = counter() },
        { http_failures = counter() },
    } } },
} }

local passive = { type = "record", fields = {
    { type = { type = "string", default = "http",
               one_of = { "tcp", "http", "https", "grpc", "grpcs" } } },
    { healthy = { type = "record", fields = {
        { http_statuses = statuses { 200, 201, 202, 203, 204, 205, 206,
                                     207, 208, 226, 300, 301, 302, 303,
                                     304, 305, 306, 307, 308 } },
        { successes = counter() },
    } } },
    { unhealthy = { type = "record", fields = {
        { http_statuses = statuses { 429, 500, 503 } },
        { tcp_failures = counter() },
        { timeouts = counter() },
        { http_failures = counter() },
    } } },
} }

local HASH_ON = { "none", "consumer", "ip", "header", "cookie", "path",
                  "query_arg", "uri_capture" }

return {
    name = "upstreams",
    primary_key = { "id" },
    endpoint_key = "name",
    fields = {
        { id = typedefs.uuid },
        { created_at = typedefs.auto_timestamp_s },
        { updated_at = typedefs.auto_timestamp_s },
        { name = { type = "string", required = true, unique = true,
                   custom_validator = typedefs.validate_host } },
        { algorithm = { type = "string", default = "round-robin",
                        one_of = { "consistent-hashing", "least-connections",
                                   "round-robin", "latency" } } },
        { hash_on = { type = "string", default = "none",
                      one_of = HASH_ON } },
        { hash_fallback = { type = "string", default = "none",
                            one_of = HASH_ON } },
        { hash_on_header = typedefs.header_name },
        { hash_fallback_header = typedefs.header_name },
        { hash_on_cookie = { type = "string" } },
        { hash_on_cookie_path = typedefs.path { default = "/" } },
        { hash_on_query_arg = { type = "string" } },
        { hash_fallback_query_arg = { type = "string" } },
        { hash_on_uri_capture = { type = "string" } },
        { hash_fallback_uri_capture = { type = "string" } },
        { slots = { type = "integer", default = 10000,
                    between = { 10, 2 ^ 16 } } },
        { healthchecks = { type = "record", fields = {
            { active = active },
            { passive = passive },
            { threshold = { type = "number", default = 0,
                            between = { 0, 100 } } },
        } } },
        { tags = typedefs.tags },
        { host_header = typedefs.host },
        { client_certificate = { type = "foreign",
                                 reference = "certificates" } },
        { use_srv_name = { type = "boolean", default = false } },
    },
    entity_checks = {
        { conditional = { if_field = "hash_on",
                          if_match = { match = "^header$" },
                          then_field = "hash_on_header",
                          then_match = { required = true } } },
        { conditional = { if_field = "hash_on",
                          if_match = { match = "^cookie$" },
                          then_field = "hash_on_cookie",
                          then_match = { required = true } } },
    },
}
