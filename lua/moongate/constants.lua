-- moongate.constants -- names and numbers several modules agree on.
--
-- BUNDLED_PLUGINS lists the folders of plugins/ (what `plugins = bundled`
-- enables); a unit spec checks the list against the folder.  KONG_VERSION
-- is the Kong release whose plugin API Moongate implements: plugins gate
-- features on kong.version_num, so it reports Kong's numbering, and
-- Moongate's own version separately (kong.moongate_version).

local _M = {}

_M.BUNDLED_PLUGINS = {
    "mg-header-rewrite",
}

_M.KONG_VERSION = "3.9.0"
_M.KONG_VERSION_NUM = 3009000

_M.MOONGATE_VERSION = "0.1.0"

return _M
