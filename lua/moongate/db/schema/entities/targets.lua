-- targets: Kong 3.x `targets` entity.  Timestamps are Kong's (ms, as
-- numbers); the target gets Kong's default port 8000 on write (see
-- moongate.db.dao's normalize hook).

local typedefs = require "moongate.schema.typedefs"

local function validate_target(target)
    local host = target:match("^%[.*%]") or target:match("^[^:]*")
    local port = target:sub(#host + 1):match("^:(%d+)$")
    if target:sub(#host + 1) ~= "" and not port then
        return nil, "Invalid target ('" .. target .. "'); not a valid " ..
                    "hostname or ip address"
    end
    local ok = typedefs.validate_host(host:gsub("^%[(.*)%]$", "%1"))
    if not ok then
        return nil, "Invalid target ('" .. target .. "'); not a valid " ..
                    "hostname or ip address"
    end
    if port and tonumber(port) > 65535 then
        return nil, "Invalid target ('" .. target .. "'); not a valid " ..
                    "port number"
    end
    return true
end

return {
    name = "targets",
    primary_key = { "id" },
    endpoint_key = "target",
    cache_key = { "upstream", "target" },
    fields = {
        { id = typedefs.uuid },
        { created_at = typedefs.auto_timestamp_ms },
        { updated_at = typedefs.auto_timestamp_ms },
        { upstream = { type = "foreign", reference = "upstreams",
                       required = true, on_delete = "cascade" } },
        { target = { type = "string", required = true,
                     custom_validator = validate_target } },
        { weight = { type = "integer", default = 100,
                     between = { 0, 65535 } } },
        { tags = typedefs.tags },
    },
    -- Kong's targets DAO adds the default port
    normalize = function(e)
        local t = e.target
        if type(t) == "string" then
            local host = t:match("^%[.*%]") or t:match("^[^:]*")
            if t == host then
                if host:find(":", 1, true) and not host:find("^%[") then
                    t = "[" .. host .. "]"
                end
                e.target = t .. ":8000"
            end
        end
    end,
}
