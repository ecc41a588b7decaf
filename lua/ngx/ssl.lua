-- ngx.ssl -- the part of lua-resty-core's ngx.ssl a Kong plugin's
-- certificate handler uses most: the SNI the client sent.
--
-- Not there: setting the certificate from Lua (clear_certs, set_der_cert,
-- set_der_priv_key, ...) -- certificates come from the certificates and
-- snis entities (Moongate picks one by SNI before this phase runs).

local api = require "moongate.ffi"
local context = require "moongate.context"

local C = api.C
local OK = api.OK
local sp, sn = api.sp, api.sn
local str = api.str

local _M = { version = "0.1.0" }

--- The server name the client asked for (SNI, lower-case), or nil when it
-- sent none or the connection is not TLS.
function _M.server_name()
    local ctx = context.current
    if not ctx or not ctx.r then
        return nil, "no request found"
    end
    if C.mg_lua_req_sni(ctx.r, sp, sn) ~= OK then
        return nil
    end
    return (str(sp[0], sn[0]))
end

return _M
