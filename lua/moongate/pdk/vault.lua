-- kong.vault -- secret references: `{vault://env/NAME}` and
-- `{vault://env/NAME/key}` (the environment vault, Kong's `env`: NAME is
-- upper-cased, '-' becomes '_'; with /key the variable holds a JSON
-- object and the key is taken from it).  The runloop resolves the
-- `referenceable` fields of every plugin config with it at init, so
-- handlers see the secret itself, as in Kong.
--
-- Other vault backends (aws, gcp, hcv, azure) are refused with a message
-- naming them.

local json = require("moongate.pdk.private").json

local _M = {}

local getenv = os.getenv

--- Is s a reference ("{vault://...}")?
function _M.is_reference(s)
    return type(s) == "string" and s:match("^{vault://.+}$") ~= nil
end

--- { name = vault, resource =, key = } or nil, err
function _M.parse_reference(ref)
    if not _M.is_reference(ref) then
        return nil, "not a reference"
    end
    local body = ref:sub(10, -2)                -- after "{vault://"
    body = body:gsub("%?.*$", "")               -- options are ignored
    local name, rest = body:match("^([^/]+)/(.+)$")
    if not name then
        return nil, "invalid reference format: " .. ref
    end
    local resource, key = rest:match("^([^/]+)/(.+)$")
    return { name = name, resource = resource or rest, key = key }
end

--- The secret a reference points to, or nil, err.
function _M.get(ref)
    local p, err = _M.parse_reference(ref)
    if not p then
        return nil, err
    end
    if p.name ~= "env" then
        return nil, "vault not found (" .. p.name .. "): only the env " ..
                    "vault is supported in this build"
    end
    local var = p.resource:upper():gsub("%-", "_")
    local v = getenv(var)
    if v == nil then
        return nil, "could not get value from external vault (no value " ..
                    "found (environment variable " .. var .. " not found))"
    end
    if p.key then
        local obj = json.decode(v)
        if type(obj) ~= "table" or obj[p.key] == nil then
            return nil, "could not get value from external vault (no " ..
                        "value found (key " .. p.key .. " not in " .. var ..
                        "))"
        end
        v = obj[p.key]
        if type(v) ~= "string" then
            v = tostring(v)
        end
    end
    return v
end

-- walk a record definition and its value, resolving referenceable strings
local function walk(fields, value, path)
    if type(value) ~= "table" or type(fields) ~= "table" then
        return true
    end
    for _, item in ipairs(fields) do
        local name, f = next(item)
        local v = value[name]
        local fpath = path .. "." .. name
        if type(f) == "table" and v ~= nil then
            if f.type == "string" and f.referenceable and
               _M.is_reference(v) then
                local s, err = _M.get(v)
                if not s then
                    return nil, fpath .. ": " .. err
                end
                value[name] = s
            elseif (f.type == "array" or f.type == "set") and
                   type(f.elements) == "table" and
                   f.elements.referenceable and type(v) == "table" then
                for i = 1, #v do
                    if _M.is_reference(v[i]) then
                        local s, err = _M.get(v[i])
                        if not s then
                            return nil, fpath .. "[" .. i .. "]: " .. err
                        end
                        v[i] = s
                    end
                end
            elseif f.type == "record" and f.fields then
                local ok, err = walk(f.fields, v, fpath)
                if not ok then
                    return nil, err
                end
            end
        end
    end
    return true
end

--- Resolve, in place, the references in the referenceable fields of a
-- plugin's config (`config_field`: the schema's config record field).
-- Returns true, or nil and "config.path: reason".
function _M.resolve_config(config_field, config)
    if type(config_field) ~= "table" or not config_field.fields then
        return true
    end
    return walk(config_field.fields, config, "config")
end

return _M
