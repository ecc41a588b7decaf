-- kong.meta -- compatibility name: the Kong release whose plugin API
-- Moongate implements (plugins check kong.meta._VERSION / _VERSION_TABLE).

local constants = require "moongate.constants"

local major, minor, patch = constants.KONG_VERSION:match("^(%d+)%.(%d+)%.(%d+)")

local version = setmetatable({
    major = tonumber(major),
    minor = tonumber(minor),
    patch = tonumber(patch),
}, {
    __tostring = function(t)
        return string.format("%d.%d.%d", t.major, t.minor, t.patch)
    end,
})

return {
    _NAME = "kong",
    _VERSION = tostring(version),
    _VERSION_TABLE = version,
    _SERVER_TOKENS = "kong/" .. tostring(version),
    _MOONGATE_VERSION = constants.MOONGATE_VERSION,
    _DEPENDENCIES = {},
}
