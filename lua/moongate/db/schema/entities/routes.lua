-- routes: Kong 3.x `routes` entity (traditional router fields), with
-- Kong's rule that an http(s) route names at least one of methods,
-- hosts, headers, paths (or snis for https).

local typedefs = require "moongate.schema.typedefs"

-- Kong's per-protocol subschema rule: what a route of these protocols
-- must match on ("https" asks for more than "http", and so on)
local function needs_one_of(proto, fields, else_proto, else_fields)
    return { conditional_at_least_one_of = {
        if_field = "protocols",
        if_match = { contains = proto },
        then_at_least_one_of = fields,
        then_err = "must set one of %s when 'protocols' is '" .. proto .. "'",
        else_match = { contains = else_proto },
        else_then_at_least_one_of = else_fields,
        else_then_err = "must set one of %s when 'protocols' is '" ..
                        else_proto .. "'",
    } }
end

return {
    name = "routes",
    primary_key = { "id" },
    endpoint_key = "name",
    fields = {
        { id = typedefs.uuid },
        { created_at = typedefs.auto_timestamp_s },
        { updated_at = typedefs.auto_timestamp_s },
        { name = typedefs.utf8_name },
        { protocols = { type = "set", len_min = 1, required = true,
                        elements = typedefs.protocol,
                        mutually_exclusive_subsets = {
                            { "http", "https" },
                            { "tcp", "tls", "udp" },
                            { "tls_passthrough" },
                            { "grpc", "grpcs" },
                        },
                        default = { "http", "https" } } },
        { https_redirect_status_code = { type = "integer",
                                         one_of = { 426, 301, 302, 307, 308 },
                                         default = 426, required = true } },
        { strip_path = { type = "boolean", required = true,
                         default = true } },
        { preserve_host = { type = "boolean", required = true,
                            default = false } },
        { request_buffering = { type = "boolean", required = true,
                                default = true } },
        { response_buffering = { type = "boolean", required = true,
                                 default = true } },
        { regex_priority = { type = "integer", default = 0 } },
        { path_handling = { type = "string", default = "v0",
                            one_of = { "v0", "v1" } } },
        { service = { type = "foreign", reference = "services" } },
        { tags = typedefs.tags },
        { methods = typedefs.methods },
        { hosts = typedefs.hosts },
        { paths = typedefs.router_paths },
        { headers = typedefs.headers },
        { snis = { type = "set", elements = typedefs.sni } },
        { sources = typedefs.sources },
        { destinations = typedefs.destinations },
    },
    entity_checks = {
        needs_one_of("https", { "methods", "hosts", "headers", "paths",
                                "snis" },
                     "http", { "methods", "hosts", "headers", "paths" }),
        needs_one_of("grpcs", { "hosts", "headers", "paths", "snis" },
                     "grpc", { "hosts", "headers", "paths" }),
        needs_one_of("tls", { "sources", "destinations", "snis" },
                     "tcp", { "sources", "destinations" }),
        needs_one_of("tls_passthrough", { "snis" },
                     "udp", { "sources", "destinations" }),
    },
}
