-- The Lua half of Moongate as a rock: the plugin runtime, the PDK, the
-- `ngx` subset and the Kong compatibility modules under lua/.  The C
-- core (bin/moongate) is built by the Makefile, not by LuaRocks; this
-- rockspec is the manifest of the Lua modules (every file under lua/ is
-- listed; spec/01-unit/rockspec_spec.lua keeps the two equal) and lets
-- the modules be installed into a tree from a checkout, at the
-- repository root:
--
--   luarocks --tree TREE --lua-version 5.1 make --deps-mode=none \
--       rockspecs/moongate-0.1.0-1.rockspec
--
-- (`luarocks make` builds from the current directory; source.url is not
-- fetched.)
package = "moongate"
version = "0.1.0-1"
source = {
  url = "file://.",
}
description = {
  summary = "Moongate's LuaJIT plugin runtime: Kong's plugin model and PDK",
  detailed = [[
An AI gateway with a C core; this rock holds its Lua runtime, which runs
Kong plugins (handler.lua + schema.lua) unchanged.
]],
  -- the repository has no LICENSE file yet: set this when it does
  license = "unspecified",
}
dependencies = {
  "lua >= 5.1, < 5.2",
  "lua-cjson",
}
build = {
  type = "builtin",
  modules = {
    ["kong.constants"] = "lua/kong/constants.lua",
    ["kong.db.schema"] = "lua/kong/db/schema/init.lua",
    ["kong.db.schema.typedefs"] = "lua/kong/db/schema/typedefs.lua",
    ["kong.meta"] = "lua/kong/meta.lua",
    ["kong.tools.utils"] = "lua/kong/tools/utils.lua",
    ["moongate.admin"] = "lua/moongate/admin/init.lua",
    ["moongate.admin.args"] = "lua/moongate/admin/args.lua",
    ["moongate.admin.config"] = "lua/moongate/admin/config.lua",
    ["moongate.admin.endpoints"] = "lua/moongate/admin/endpoints.lua",
    ["moongate.admin.info"] = "lua/moongate/admin/info.lua",
    ["moongate.admin.json"] = "lua/moongate/admin/json.lua",
    ["moongate.admin.router"] = "lua/moongate/admin/router.lua",
    ["moongate.cluster"] = "lua/moongate/cluster/init.lua",
    ["moongate.cluster.control_plane"] = "lua/moongate/cluster/control_plane.lua",
    ["moongate.cluster.data_plane"] = "lua/moongate/cluster/data_plane.lua",
    ["moongate.bit"] = "lua/moongate/bit.lua",
    ["moongate.codec"] = "lua/moongate/codec.lua",
    ["moongate.constants"] = "lua/moongate/constants.lua",
    ["moongate.context"] = "lua/moongate/context.lua",
    ["moongate.db"] = "lua/moongate/db/init.lua",
    ["moongate.db.dao"] = "lua/moongate/db/dao.lua",
    ["moongate.db.declarative"] = "lua/moongate/db/declarative.lua",
    ["moongate.db.errors"] = "lua/moongate/db/errors.lua",
    ["moongate.db.store"] = "lua/moongate/db/store.lua",
    ["moongate.db.store_fake"] = "lua/moongate/db/store_fake.lua",
    ["moongate.db.schema.entities.acls"] = "lua/moongate/db/schema/entities/acls.lua",
    ["moongate.db.schema.entities.basicauth_credentials"] = "lua/moongate/db/schema/entities/basicauth_credentials.lua",
    ["moongate.db.schema.entities.ca_certificates"] = "lua/moongate/db/schema/entities/ca_certificates.lua",
    ["moongate.db.schema.entities.certificates"] = "lua/moongate/db/schema/entities/certificates.lua",
    ["moongate.db.schema.entities.consumers"] = "lua/moongate/db/schema/entities/consumers.lua",
    ["moongate.db.schema.entities.jwt_secrets"] = "lua/moongate/db/schema/entities/jwt_secrets.lua",
    ["moongate.db.schema.entities.keyauth_credentials"] = "lua/moongate/db/schema/entities/keyauth_credentials.lua",
    ["moongate.db.schema.entities.plugins"] = "lua/moongate/db/schema/entities/plugins.lua",
    ["moongate.db.schema.entities.routes"] = "lua/moongate/db/schema/entities/routes.lua",
    ["moongate.db.schema.entities.services"] = "lua/moongate/db/schema/entities/services.lua",
    ["moongate.db.schema.entities.snis"] = "lua/moongate/db/schema/entities/snis.lua",
    ["moongate.db.schema.entities.targets"] = "lua/moongate/db/schema/entities/targets.lua",
    ["moongate.db.schema.entities.upstreams"] = "lua/moongate/db/schema/entities/upstreams.lua",
    ["moongate.digest"] = "lua/moongate/digest.lua",
    ["moongate.ffi"] = "lua/moongate/ffi.lua",
    ["moongate.ffi_fake"] = "lua/moongate/ffi_fake.lua",
    ["moongate.ngx"] = "lua/moongate/ngx.lua",
    ["moongate.pdk.cache"] = "lua/moongate/pdk/cache.lua",
    ["moongate.pdk.client"] = "lua/moongate/pdk/client.lua",
    ["moongate.pdk.configuration"] = "lua/moongate/pdk/configuration.lua",
    ["moongate.pdk.ctx"] = "lua/moongate/pdk/ctx.lua",
    ["moongate.pdk"] = "lua/moongate/pdk/init.lua",
    ["moongate.pdk.ip"] = "lua/moongate/pdk/ip.lua",
    ["moongate.pdk.log"] = "lua/moongate/pdk/log.lua",
    ["moongate.pdk.node"] = "lua/moongate/pdk/node.lua",
    ["moongate.pdk.private"] = "lua/moongate/pdk/private.lua",
    ["moongate.pdk.request"] = "lua/moongate/pdk/request.lua",
    ["moongate.pdk.response"] = "lua/moongate/pdk/response.lua",
    ["moongate.pdk.service"] = "lua/moongate/pdk/service.lua",
    ["moongate.pdk.table"] = "lua/moongate/pdk/table.lua",
    ["moongate.pdk.vault"] = "lua/moongate/pdk/vault.lua",
    ["moongate.phases"] = "lua/moongate/phases.lua",
    ["moongate.plugin_loader"] = "lua/moongate/plugin_loader.lua",
    ["moongate.re"] = "lua/moongate/re.lua",
    ["moongate.runloop"] = "lua/moongate/runloop.lua",
    ["moongate.cli"] = "lua/moongate/cli.lua",
    ["moongate.json"] = "lua/moongate/json.lua",
    ["moongate.schema.entity_checks"] = "lua/moongate/schema/entity_checks.lua",
    ["moongate.schema.errors"] = "lua/moongate/schema/errors.lua",
    ["moongate.schema"] = "lua/moongate/schema/init.lua",
    ["moongate.schema.typedefs"] = "lua/moongate/schema/typedefs.lua",
    ["moongate.schema.validators"] = "lua/moongate/schema/validators.lua",
    ["moongate.shdict"] = "lua/moongate/shdict.lua",
    ["moongate.socket"] = "lua/moongate/socket.lua",
    ["moongate.socket_fake"] = "lua/moongate/socket_fake.lua",
    ["ngx.ssl"] = "lua/ngx/ssl.lua",
    ["resty.http"] = "lua/resty/http.lua",
    ["resty.http_headers"] = "lua/resty/http_headers.lua",
  },
}
