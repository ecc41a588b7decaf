-- kong.constants -- compatibility name: the constants Kong plugins read
-- (header names above all: auth plugins set X-Consumer-* with them).

local moongate = require "moongate.constants"

local PROTOCOLS_WITH_SUBSYSTEM = {
    http = "http", https = "http", ws = "http", wss = "http",
    grpc = "http", grpcs = "http",
    tcp = "stream", tls = "stream", tls_passthrough = "stream",
    udp = "stream",
}

local protocols = {}
for p in pairs(PROTOCOLS_WITH_SUBSYSTEM) do
    protocols[#protocols + 1] = p
end
table.sort(protocols)

return {
    BUNDLED_PLUGINS = (function()
        local t = {}
        for _, n in ipairs(moongate.BUNDLED_PLUGINS) do
            t[n] = true
        end
        return t
    end)(),
    PROTOCOLS = protocols,
    PROTOCOLS_WITH_SUBSYSTEM = PROTOCOLS_WITH_SUBSYSTEM,
    HEADERS = {
        HOST_OVERRIDE = "X-Host-Override",
        PROXY_LATENCY = "X-Kong-Proxy-Latency",
        RESPONSE_LATENCY = "X-Kong-Response-Latency",
        ADMIN_LATENCY = "X-Kong-Admin-Latency",
        UPSTREAM_LATENCY = "X-Kong-Upstream-Latency",
        UPSTREAM_STATUS = "X-Kong-Upstream-Status",
        CONSUMER_ID = "X-Consumer-ID",
        CONSUMER_CUSTOM_ID = "X-Consumer-Custom-ID",
        CONSUMER_USERNAME = "X-Consumer-Username",
        CONSUMER_GROUPS = "X-Consumer-Groups",
        CREDENTIAL_IDENTIFIER = "X-Credential-Identifier",
        CREDENTIAL_USERNAME = "X-Credential-Username",
        RATELIMIT_LIMIT = "X-RateLimit-Limit",
        RATELIMIT_REMAINING = "X-RateLimit-Remaining",
        AUTHENTICATED_GROUPS = "X-Authenticated-Groups",
        FORWARDED_HOST = "X-Forwarded-Host",
        FORWARDED_PREFIX = "X-Forwarded-Prefix",
        ANONYMOUS = "X-Anonymous-Consumer",
        VIA = "Via",
        SERVER = "Server",
        REQUEST_ID = "X-Kong-Request-Id",
    },
    CACHE = {},
    DATABASE = {},
}
