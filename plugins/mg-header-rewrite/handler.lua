-- mg-header-rewrite: remove, set and add headers of the request sent
-- upstream (access) and of the response sent to the client
-- (header_filter).  Header names are applied in sorted order so the
-- result does not depend on table iteration.

local sort = table.sort

local HeaderRewrite = {
  PRIORITY = 801,         -- with Kong's request-transformer
  VERSION = "0.1.0",
}

local function sorted_keys(map)
  local keys = {}
  for k in pairs(map) do
    keys[#keys + 1] = k
  end
  sort(keys)
  return keys
end

local function apply(changes, clear, set, add)
  if not changes then
    return
  end
  for _, name in ipairs(changes.remove or {}) do
    clear(name)
  end
  local s = changes.set or {}
  for _, name in ipairs(sorted_keys(s)) do
    set(name, s[name])
  end
  local a = changes.add or {}
  for _, name in ipairs(sorted_keys(a)) do
    add(name, a[name])
  end
end

function HeaderRewrite:access(conf)
  local req = kong.service.request
  apply(conf.request, req.clear_header, req.set_header, req.add_header)
end

function HeaderRewrite:header_filter(conf)
  local resp = kong.response
  apply(conf.response, resp.clear_header, resp.set_header, resp.add_header)
end

return HeaderRewrite
