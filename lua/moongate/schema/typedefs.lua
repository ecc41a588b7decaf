-- moongate.schema.typedefs -- Kong's ready-made field types
-- (`kong.db.schema.typedefs`): the names, constraints and error texts plugin
-- schemas rely on, e.g. `{ consumer = typedefs.no_consumer }`,
-- `{ port = typedefs.port { default = 6379 } }`.
--
-- Each typedef is a `Schema.define` template: use it as is, or call it with
-- overrides.  The validators are plain Lua (hostnames, IPs, CIDRs, paths,
-- URLs, tags, UTF-8) so schemas load and check outside the worker VM too
-- (`moongate check`, busted).  Certificates and keys get a PEM shape check
-- here; parsing them is the TLS layer's job when they are used.
--
-- Rejected: requiring Kong's helpers (kong.tools.utils, socket.url,
-- resty.openssl); Moongate ships none of them.

local Schema = require "moongate.schema"

local type = type
local ipairs = ipairs
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local loadstring = loadstring or load
local byte = string.byte
local find = string.find
local gsub = string.gsub
local match = string.match
local sub = string.sub
local null = Schema.null
local define = Schema.define

local _M = {}

-- addresses ---------------------------------------------------------------

local function parse_ipv4(s)
    local a, b, c, d = match(s, "^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%." ..
                                "(%d%d?%d?)$")
    if not a then
        return nil
    end
    a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
    if a > 255 or b > 255 or c > 255 or d > 255 then
        return nil
    end
    return true
end

local function parse_ipv6(s)
    if s == "" or find(s, "[^%x:%.]") then
        return nil
    end
    -- a trailing dotted IPv4 counts as two groups
    local head, v4 = match(s, "^(.*:)(%d+%.%d+%.%d+%.%d+)$")
    if v4 then
        if not parse_ipv4(v4) then
            return nil
        end
        s = head .. "0:0"
    end
    if find(s, ".", 1, true) then
        return nil
    end
    local dbl = find(s, "::", 1, true)
    if dbl and find(s, "::", dbl + 1, true) then
        return nil
    end
    local function groups(part)
        if part == "" then
            return 0
        end
        local n = 0
        for g in (part .. ":"):gmatch("([^:]*):") do
            if not match(g, "^%x%x?%x?%x?$") then
                return nil
            end
            n = n + 1
        end
        return n
    end
    if dbl then
        local l = groups(sub(s, 1, dbl - 1))
        local r = groups(sub(s, dbl + 2))
        return l and r and l + r <= 7 or nil
    end
    return groups(s) == 8 or nil
end

-- Kong's hostname_type: two colons or more is IPv6, digits and dots IPv4.
local function hostname_type(name)
    local rest, colons = gsub(name, ":", "")
    if colons > 1 then
        return "ipv6"
    end
    if match(rest, "^[%d%.]+$") then
        return "ipv4"
    end
    return "name"
end

local function check_port(port)
    port = tonumber(port)
    if port > 65535 then
        return nil, "invalid port number"
    end
    return port
end

-- Kong's normalize_ip: { type =, host =, port = } or nil, reason (the
-- reason "invalid port number" means the address itself was fine).
local function normalize_ip(address)
    local atype = hostname_type(address)
    local host, port
    if atype == "ipv4" then
        host, port = match(address, "^([%d%.]+):(%d+)$")
        host = host or address
        if not parse_ipv4(host) then
            return nil, "invalid ipv4 address: " .. address
        end
    elseif atype == "ipv6" then
        local bracketed
        bracketed, port = match(address, "^%[([^%]]*)%]:(%d+)$")
        host = bracketed or match(address, "^%[([^%]]*)%]$") or address
        if not parse_ipv6(host) then
            return nil, "invalid ipv6 address: " .. address
        end
    else
        host, port = match(address, "^(.*):(%d+)$")
        host = host or address
        if not match(host, "^[%w%-%._]+$") then
            return nil, "invalid hostname: " .. address
        end
        local segments = {}
        for seg in (host .. "."):gmatch("([^.]*)%.") do
            segments[#segments + 1] = seg
        end
        for i, seg in ipairs(segments) do
            if sub(seg, -1) == "-" or (seg == "" and i ~= #segments) then
                return nil, "invalid hostname: " .. address
            end
        end
    end
    if port then
        local p, err = check_port(port)
        if not p then
            return nil, err
        end
        port = p
    end
    return { type = atype, host = host, port = port }
end
_M.normalize_ip = normalize_ip

local function is_valid_ipv4(s)
    return parse_ipv4(s) == true
end

local function is_valid_ipv6(s)
    return parse_ipv6(s) == true
end

local function is_valid_ip(s)
    return is_valid_ipv4(s) or is_valid_ipv6(s)
end

local function is_valid_cidr_v4(s)
    local ip, bits = match(s, "^([%d%.]+)/(%d%d?)$")
    return ip ~= nil and is_valid_ipv4(ip) and tonumber(bits) <= 32
end

local function is_valid_cidr_v6(s)
    local ip, bits = match(s, "^([%x:%.]+)/(%d%d?%d?)$")
    return ip ~= nil and is_valid_ipv6(ip) and tonumber(bits) <= 128
end

local function validate_host(host)
    local res, err = normalize_ip(host)
    if not res and err ~= "invalid port number" then
        return nil, "invalid value: " .. host
    end
    if err == "invalid port number" or type(res.port) == "number" then
        return nil, "must not have a port"
    end
    return true
end

local function validate_host_with_optional_port(host)
    local res, err = normalize_ip(host)
    if not res then
        return nil, err
    end
    return true
end

local function validate_ip(ip)
    if is_valid_ip(ip) then
        return true
    end
    return nil, "not an ip address: " .. ip
end

local function validate_ip_or_cidr(s)
    if is_valid_ip(s) or is_valid_cidr_v4(s) or is_valid_cidr_v6(s) then
        return true
    end
    return nil, "invalid ip or cidr range: '" .. s .. "'"
end

local function validate_ip_or_cidr_v4(s)
    if is_valid_ipv4(s) or is_valid_cidr_v4(s) then
        return true
    end
    return nil, "invalid ipv4 cidr range: '" .. s .. "'"
end

local function validate_sni(host)
    local res, err = normalize_ip(host)
    if not res and err ~= "invalid port number" then
        return nil, "invalid value: " .. host
    end
    if res and res.type ~= "name" then
        return nil, "must not be an IP"
    end
    if err == "invalid port number" or type(res.port) == "number" then
        return nil, "must not have a port"
    end
    return true
end

local function validate_wildcard_host(host)
    local idx = find(host, "*", 1, true)
    if idx then
        if idx ~= 1 and idx ~= #host then
            return nil, "wildcard must be leftmost or rightmost character"
        end
        local mock, count = gsub(host, "%*", "wildcard")
        if count > 1 then
            return nil, "only one wildcard must be specified"
        end
        host = mock
    end
    return validate_sni(host)
end

-- strings -----------------------------------------------------------------

-- position of the first byte that does not start a valid UTF-8 sequence,
-- or nil when the whole string is valid
local function utf8_invalid_at(s)
    local i, n = 1, #s
    while i <= n do
        local c = byte(s, i)
        local len
        if c < 0x80 then
            len = 1
        elseif c >= 0xC2 and c <= 0xDF then
            len = 2
        elseif c >= 0xE0 and c <= 0xEF then
            len = 3
        elseif c >= 0xF0 and c <= 0xF4 then
            len = 4
        else
            return i
        end
        for j = i + 1, i + len - 1 do
            local cc = byte(s, j)
            if not cc or cc < 0x80 or cc > 0xBF then
                return i
            end
        end
        local c2 = byte(s, i + 1)
        if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F)
           or (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then
            return i
        end
        i = i + len
    end
    return nil
end

local function validate_utf8_string(s)
    local at = utf8_invalid_at(s)
    if at then
        return nil, "invalid utf-8 character sequence detected at position "
                    .. tostring(at)
    end
    return true
end

local function validate_name(name)
    if not match(name, "^[%w%.%-%_~]+$") then
        return nil, "invalid value '" .. name .. "': it must only contain " ..
                    "alphanumeric and '., -, _, ~' characters"
    end
    return true
end

local function validate_utf8_name(name)
    local ok, err = validate_utf8_string(name)
    if not ok then
        return nil, err
    end
    if not match(name, "^[%w%.%-%_~\128-\244]+$") then
        return nil, "invalid value '" .. name .. "': the only accepted " ..
                    "ascii characters are alphanumerics or ., -, _, and ~"
    end
    return true
end

local function validate_tag(tag)
    local ok, err = validate_utf8_string(tag)
    if not ok then
        return nil, err
    end
    -- printable ASCII except ',' and '/', plus UTF-8 bytes
    if not match(tag, "^[ \033-\043\045\046\048-\126\128-\244]+$") then
        return nil, "invalid tag '" .. tag .. "': expected printable " ..
                    "ascii (except `,` and `/`) or valid utf-8 sequences"
    end
    return true
end

local function validate_path(path)
    if not match(path, "^/[%w%.%-%_%~%/%%%:%@%!%$%&%'%(%)%*%+%,%;%=]*$") then
        return nil, "invalid path: '" .. path .. "' (characters outside " ..
                    "of the reserved list of RFC 3986 found)", "rfc3986"
    end
    local raw = gsub(path, "%%%x%x", "___")
    local at = find(raw, "%", 1, true)
    if at then
        return nil, "invalid url-encoded value: '" .. sub(raw, at, at + 2) ..
                    "'", "percent"
    end
    return true
end

-- scheme://[userinfo@]host[:port][/path][?query][#fragment], socket.url's
-- reading: no "//" means no host.
local function parse_url(url)
    local scheme, rest = match(url, "^([%a][%w%+%-%.]*):(.*)$")
    if not scheme then
        rest = url
    end
    local authority = match(rest, "^//([^/?#]*)")
    local host
    if authority then
        authority = gsub(authority, "^.*@", "")
        host = match(authority, "^%[[^%]]*%]") or
               match(authority, "^([^:]*)")
        if host == "" then
            host = nil
        end
    end
    return { scheme = scheme, host = host }
end
_M.parse_url = parse_url

local function validate_url(url)
    local parsed = parse_url(url)
    if not parsed.host then
        return nil, "missing host in url"
    end
    if not parsed.scheme then
        return nil, "missing scheme in url"
    end
    return true
end

local function validate_header_name(name)
    if name == "" then
        return nil, "no header name provided"
    end
    if match(name, "^[%w%-_]+$") then
        return true
    end
    return nil, "bad header name '" .. name .. "', allowed characters are " ..
                "A-Z, a-z, 0-9, '_', and '-'"
end

local function validate_http_token(token)
    if token == "" then
        return nil, "no token provided"
    end
    if not find(token, "[%z\1-\32\127%(%)<>@,;:\\\"/%?={}%[%]]") then
        return true
    end
    return nil, "contains one or more invalid characters. ASCII control " ..
                "characters (0-31;127), space, tab and the characters " ..
                "()<>@,;:\\\"/?={}[] are not allowed."
end

local function validate_certificate(cert)
    local label, body = match(cert, "^%s*%-%-%-%-%-BEGIN ([%u ]+)%-%-%-%-%-" ..
                                    "%s*(.-)%s*%-%-%-%-%-END ")
    if label ~= "CERTIFICATE" or not body
       or find(gsub(body, "%s", ""), "[^%w%+/=]") or #body == 0 then
        return nil, "invalid certificate: not a PEM-encoded X.509 certificate"
    end
    return true
end

local KEY_LABELS = {
    ["PRIVATE KEY"] = true, ["RSA PRIVATE KEY"] = true,
    ["EC PRIVATE KEY"] = true, ["ENCRYPTED PRIVATE KEY"] = true,
    ["PUBLIC KEY"] = true, ["RSA PUBLIC KEY"] = true,
}

local function validate_key(key)
    local label, body = match(key, "^%s*%-%-%-%-%-BEGIN ([%u ]+)%-%-%-%-%-" ..
                                   "%s*(.-)%s*%-%-%-%-%-END ")
    if not (label and KEY_LABELS[label]) or not body or #body == 0 then
        return nil, "invalid key: not a PEM-encoded key"
    end
    return true
end

local function validate_lua_expression(code)
    local fn, err = loadstring(code, "=lua_code")
    if not fn then
        return nil, err
    end
    return true
end

local function validate_pem_keys(values)
    if Schema.is_reference(values.private_key)
       or Schema.is_reference(values.public_key) then
        return true
    end
    if type(values.public_key) == "string" then
        local ok = validate_key(values.public_key)
        if not ok then
            return nil, "could not load public key"
        end
    end
    if type(values.private_key) == "string" then
        local ok = validate_key(values.private_key)
        if not ok then
            return nil, "could not load private key"
        end
    end
    return true
end

_M.validate_host = validate_host
_M.validate_ip = validate_ip
_M.validate_path = validate_path
_M.validate_url = validate_url
_M.validate_header_name = validate_header_name
_M.validate_utf8 = utf8_invalid_at
_M.is_valid_ip = is_valid_ip
_M.is_valid_ipv4 = is_valid_ipv4
_M.is_valid_ipv6 = is_valid_ipv6

-- the typedefs --------------------------------------------------------------

-- Kong OSS protocols; the HTTP ones are the default of `protocols`.
local PROTOCOLS = { "grpc", "grpcs", "http", "https", "tcp", "tls",
                    "tls_passthrough", "udp" }
local HTTP_PROTOCOLS = { "grpc", "grpcs", "http", "https" }
_M.PROTOCOLS = PROTOCOLS
_M.HTTP_PROTOCOLS = HTTP_PROTOCOLS

local typedefs = {}

typedefs.http_method = define {
    type = "string",
    match = "^%u+$",
    description = "A string representing an HTTP method, such as GET, " ..
                  "POST, PUT, or DELETE. The string must contain only " ..
                  "uppercase letters.",
}

typedefs.protocol = define {
    type = "string",
    one_of = PROTOCOLS,
    description = "A string representing a protocol, such as HTTP or HTTPS.",
}

typedefs.host = define {
    type = "string",
    custom_validator = validate_host,
    description = "A string representing a host name, such as example.com.",
}

typedefs.redis_host = define {
    type = "string",
    custom_validator = validate_host,
    description = "When using the `redis` policy, this property specifies " ..
                  "the address to the Redis server.",
}

typedefs.host_with_optional_port = define {
    type = "string",
    custom_validator = validate_host_with_optional_port,
    description = "A host name with an optional port, such as " ..
                  "example.com or example.com:8080.",
}

typedefs.wildcard_host = define {
    type = "string",
    custom_validator = validate_wildcard_host,
    description = "A host name with an optional leading or trailing " ..
                  "wildcard, such as *.example.com.",
}

typedefs.ip = define {
    type = "string",
    custom_validator = validate_ip,
    description = "An IP address, such as 192.168.1.1.",
}

typedefs.ip_or_cidr = define {
    type = "string",
    custom_validator = validate_ip_or_cidr,
    description = "An IP address or CIDR block, such as 192.168.0.0/16.",
}

typedefs.cidr_v4 = define {
    type = "string",
    custom_validator = validate_ip_or_cidr_v4,
    description = "An IPv4 address or CIDR block, such as 192.168.0.0/16.",
}

-- deprecated alias, as in Kong
typedefs.cidr = typedefs.cidr_v4

typedefs.port = define {
    type = "integer",
    between = { 0, 65535 },
    description = "An integer representing a port number between 0 and " ..
                  "65535, inclusive.",
}

typedefs.path = define {
    type = "string",
    starts_with = "/",
    match_none = {
        { pattern = "//", err = "must not have empty segments" },
    },
    custom_validator = validate_path,
    description = "A URL path such as /path/to/resource: starts with a " ..
                  "slash, no empty segments.",
}

typedefs.url = define {
    type = "string",
    custom_validator = validate_url,
    description = "A URL, such as https://example.com/path?q=search.",
}

typedefs.cookie_name = define {
    type = "string",
    custom_validator = validate_http_token,
    description = "An HTTP token (RFC 2616) naming a cookie.",
}

typedefs.header_name = define {
    type = "string",
    custom_validator = validate_header_name,
    description = "A string representing an HTTP header name.",
}

typedefs.timeout = define {
    type = "integer",
    between = { 0, 2 ^ 31 - 2 },
    description = "A timeout in milliseconds, between 0 and 2^31-2.",
}

typedefs.uuid = define {
    type = "string",
    uuid = true,
    auto = true,
    description = "A string representing a UUID.",
}

typedefs.auto_timestamp_s = define {
    type = "integer",
    timestamp = true,
    auto = true,
    description = "An automatic Unix timestamp in seconds.",
}

typedefs.auto_timestamp_ms = define {
    type = "number",
    timestamp = true,
    auto = true,
    description = "An automatic Unix timestamp in milliseconds.",
}

typedefs.no_route = define {
    type = "foreign",
    reference = "routes",
    eq = null,
    description = "The plugin cannot be scoped to a route.",
}

typedefs.no_service = define {
    type = "foreign",
    reference = "services",
    eq = null,
    description = "The plugin cannot be scoped to a service.",
}

typedefs.no_consumer = define {
    type = "foreign",
    reference = "consumers",
    eq = null,
    description = "The plugin cannot be scoped to a consumer.",
}

typedefs.no_consumer_group = define {
    type = "foreign",
    reference = "consumer_groups",
    eq = null,
    description = "The plugin cannot be scoped to a consumer group.",
}

typedefs.name = define {
    type = "string",
    unique = true,
    custom_validator = validate_name,
    description = "A unique string representing a name.",
}

typedefs.utf8_name = define {
    type = "string",
    unique = true,
    custom_validator = validate_utf8_name,
    description = "A unique string representing a UTF-8 encoded name.",
}

typedefs.sni = define {
    type = "string",
    custom_validator = validate_sni,
    description = "A TLS server name (SNI): a host name, no IP, no port.",
}

typedefs.redis_server_name = define {
    type = "string",
    custom_validator = validate_sni,
    description = "The server name sent in the TLS handshake with Redis.",
}

typedefs.certificate = define {
    type = "string",
    custom_validator = validate_certificate,
    description = "A PEM-encoded certificate.",
}

typedefs.key = define {
    type = "string",
    custom_validator = validate_key,
    description = "A PEM-encoded key.",
}

typedefs.tag = define {
    type = "string",
    required = true,
    custom_validator = validate_tag,
    description = "A string representing a tag.",
}

typedefs.tags = define {
    type = "set",
    elements = typedefs.tag,
    description = "A set of strings representing tags.",
}

typedefs.protocols = define {
    type = "set",
    required = true,
    default = HTTP_PROTOCOLS,
    elements = typedefs.protocol,
    description = "A set of strings representing protocols.",
}

typedefs.protocols_http = define {
    type = "set",
    required = true,
    default = HTTP_PROTOCOLS,
    elements = { type = "string", one_of = HTTP_PROTOCOLS },
    description = "A set of strings representing HTTP protocols.",
}

-- routes --------------------------------------------------------------------

local function validate_host_with_wildcards(host)
    return validate_host_with_optional_port((gsub(host, "%*", "abc")))
end

local function validate_path_with_regexes(path)
    local ok, err, code = validate_path(path)
    if code == "percent" then
        return ok, err, code
    end
    if sub(path, 1, 1) ~= "~" then
        return true
    end
    if not Schema.regex_syntax_ok(sub(path, 2)) then
        return nil, "invalid regex: '" .. sub(path, 2) .. "'"
    end
    return true
end

local function endpoint_record()
    return {
        type = "record",
        fields = {
            { ip = typedefs.ip_or_cidr },
            { port = typedefs.port },
        },
        entity_checks = {
            { at_least_one_of = { "ip", "port" } },
        },
    }
end

typedefs.sources = define {
    type = "set",
    elements = endpoint_record(),
    description = "A set of sources, each a record with at least one of " ..
                  "'ip' or 'port'.",
}

typedefs.no_sources = define(typedefs.sources { eq = null })

typedefs.destinations = define {
    type = "set",
    elements = endpoint_record(),
    description = "A set of destinations, each a record with at least " ..
                  "one of 'ip' or 'port'.",
}

typedefs.no_destinations = define(typedefs.destinations { eq = null })

typedefs.methods = define {
    type = "set",
    elements = typedefs.http_method,
    description = "A set of HTTP methods.",
}

typedefs.no_methods = define(typedefs.methods { eq = null })

typedefs.hosts = define {
    type = "array",
    elements = {
        type = "string",
        match_all = {
            { pattern = "^[^*]*%*?[^*]*$",
              err = "invalid wildcard: must have at most one wildcard" },
        },
        match_any = {
            patterns = { "^%*%.", "%.%*$", "^[^*]*$" },
            err = "invalid wildcard: must be placed at leftmost or " ..
                  "rightmost label",
        },
        custom_validator = validate_host_with_wildcards,
    },
    description = "An array of host names, with at most one wildcard " ..
                  "label each.",
}

typedefs.no_hosts = define(typedefs.hosts { eq = null })

typedefs.router_path = define {
    type = "string",
    match_any = {
        patterns = { "^/", "^~/" },
        err = "should start with: / (fixed path) or ~/ (regex path)",
    },
    match_none = {
        { pattern = "//", err = "must not have empty segments" },
    },
    custom_validator = validate_path_with_regexes,
    description = "A router path: /fixed or ~/regex.",
}

typedefs.router_paths = define {
    type = "array",
    elements = typedefs.router_path,
    description = "An array of router paths.",
}

typedefs.no_paths = define(typedefs.router_paths { eq = null })

typedefs.headers = define {
    type = "map",
    keys = typedefs.header_name,
    values = { type = "array", elements = { type = "string" } },
    description = "A map of header names to arrays of header values.",
}

typedefs.no_headers = define(typedefs.headers { eq = null })

-- misc ----------------------------------------------------------------------

typedefs.semantic_version = define {
    type = "string",
    match_any = {
        patterns = { "^%d+[%.%d]*$", "^%d+[%.%d]*%-?.*$" },
        err = "invalid version number: must be in format of X.Y.Z",
    },
    match_none = {
        { pattern = "%.%.", err = "must not have empty version segments" },
    },
    description = "A version number X.Y.Z with an optional -build suffix.",
}

typedefs.pem = define {
    type = "record",
    required = false,
    fields = {
        { private_key = { type = "string", required = false,
                          referenceable = true, encrypted = true } },
        { public_key = { type = "string", required = false,
                         referenceable = true } },
    },
    entity_checks = {
        { at_least_one_of = { "private_key", "public_key" } },
    },
    custom_validator = validate_pem_keys,
    description = "A pair of PEM-encoded public and private keys, or " ..
                  "vault references to them.",
}

do
    local jwk_fields = {}
    for _, name in ipairs { "issuer", "kty", "use", "key_ops", "alg", "kid",
                            "x5u", "x5c", "x5t", "x5t#S256", "k", "x", "y",
                            "crv", "n", "e", "d", "p", "q", "dp", "dq", "qi",
                            "oth", "r", "t" } do
        local f
        if name == "key_ops" or name == "x5c" then
            f = { type = "array", required = false,
                  elements = { type = "string", required = false } }
        else
            f = { type = "string", required = name == "kid" }
        end
        jwk_fields[#jwk_fields + 1] = { [name] = f }
    end
    typedefs.jwk = define {
        type = "record",
        required = false,
        fields = jwk_fields,
        description = "A JSON Web Key (JWK).",
    }
end

typedefs.queue = define {
    type = "record",
    fields = {
        { max_batch_size = { type = "integer", default = 1,
                             between = { 1, 1000000 },
                             description = "Maximum number of entries " ..
                                           "processed at a time." } },
        { max_coalescing_delay = { type = "number", default = 1,
                                   between = { 0, 3600 },
                                   description = "Seconds to wait after " ..
                                       "the first entry before sending." } },
        { max_entries = { type = "integer", default = 10000,
                          between = { 1, 1000000 },
                          description = "Maximum number of queued " ..
                                        "entries." } },
        { max_bytes = { type = "integer",
                        description = "Maximum number of queued bytes." } },
        { max_retry_time = { type = "number", default = 60,
                             description = "Seconds before giving up on " ..
                                           "a failing batch." } },
        { initial_retry_delay = { type = "number", default = 0.01,
                                  between = { 0.001, 1000000 },
                                  description = "Seconds before the first " ..
                                                "retry." } },
        { max_retry_delay = { type = "number", default = 60,
                              between = { 0.001, 1000000 },
                              description = "Maximum seconds between " ..
                                            "retries." } },
        { concurrency_limit = { type = "integer", default = 1,
                                one_of = { -1, 1 },
                                description = "Number of batches sent at " ..
                                              "once (-1: unlimited)." } },
    },
}

typedefs.lua_code = define {
    type = "map",
    keys = { type = "string", len_min = 1 },
    values = { type = "string", len_min = 1,
               custom_validator = validate_lua_expression },
    description = "Lua code as a key-value map.",
}

typedefs.ttl = define {
    type = "number",
    between = { 0, 100000000 },
    description = "Time-to-live value for data.",
}

-- An unknown typedef is a schema bug: raise, naming it, as Kong does.
-- The address/path helpers above (normalize_ip, parse_url, validate_*,
-- is_valid_ip*) are reachable here too, for the runtime and the specs.
setmetatable(typedefs, {
    __index = function(_, k)
        local v = _M[k]
        if v ~= nil then
            return v
        end
        error("schema typedef error: definition " .. tostring(k) ..
              " does not exist", 2)
    end,
})

return typedefs
