-- moongate.cluster -- hybrid mode (Kong's control plane / data plane) in
-- the Admin API: the endpoints each role adds, and a data plane's
-- read-only Admin API.  See docs/clustering.md.
--
--   control_plane  /v1/config (cluster_listen only), GET
--                  /clustering/data-planes, GET /clustering/status
--                  (moongate.cluster.control_plane)
--   data_plane     the internal /__moongate/cluster/start that starts the
--                  sync loop (moongate.cluster.data_plane), /status
--                  fields, and every write refused with 405
--   traditional    /clustering/* answer Kong's 400
--
-- Called once by moongate.admin.info.register while the admin process
-- builds its routes.

local type = type
local pairs = pairs
local setmetatable = setmetatable
local sub = string.sub

local _M = {}

local NOT_CP = { message = "this endpoint is only available when Kong is " ..
                 "configured to run as Control Plane for the cluster" }

local READ = { GET = true, HEAD = true }

-- a data plane's Admin API answers reads only (its configuration belongs
-- to the control plane); schema validation is a read too
local function read_only(router)
    local match = router.match
    local ro = setmetatable({}, { __mode = "k" })
    router.match = function(self, path)
        local route, params = match(self, path)
        if not route or sub(path, 1, 9) == "/schemas/" then
            return route, params
        end
        local r = ro[route]
        if not r then
            local methods = {}
            for m, fn in pairs(route.methods) do
                if READ[m] then
                    methods[m] = fn
                end
            end
            r = { pattern = route.pattern, segs = route.segs,
                  schema = route.schema, methods = methods }
            ro[route] = r
        end
        return r, params
    end
end

function _M.register(router, state)
    local conf = type(state.conf) == "table" and state.conf or {}
    local role = conf.role
    if role == "control_plane" then
        require("moongate.cluster.control_plane").register(router, state)
        return
    end
    local not_cp = function()
        return 400, NOT_CP
    end
    router:add("/clustering/data-planes", { GET = not_cp })
    router:add("/clustering/status", { GET = not_cp })
    if role ~= "data_plane" then
        return
    end
    local dp = require "moongate.cluster.data_plane"
    router:add("/__moongate/cluster/start", { GET = function()
        -- the core's own request (AF_UNIX peer: no client address)
        if (kong.client.get_ip() or "") ~= "" then
            return 404, { message = "Not found" }
        end
        local ok, err = dp.start(state.db, conf, state.doc.version)
        if not ok then
            kong.log.crit("cluster: cannot start the sync loop: ", err)
            return 500, { message = "An unexpected error occurred" }
        end
        return 204
    end })
    state.cluster_status = dp.status
    read_only(router)
end

return _M
