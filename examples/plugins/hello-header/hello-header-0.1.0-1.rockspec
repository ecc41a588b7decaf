-- An example Kong plugin as a rock.  Install it, offline, from this
-- directory's sources with
--   moongate plugin install examples/plugins/hello-header/hello-header-0.1.0-1.rockspec
-- (which runs `luarocks make` here) or pack it first with
--   luarocks pack hello-header-0.1.0-1.rockspec
package = "hello-header"
version = "0.1.0-1"
source = {
  url = "file://.",
}
description = {
  summary = "Moongate/Kong example plugin: adds an X-Hello response header",
  -- the repository has no LICENSE file yet: set this when it does
  license = "unspecified",
}
dependencies = {
  "lua >= 5.1",
}
build = {
  type = "builtin",
  modules = {
    ["kong.plugins.hello-header.handler"] = "kong/plugins/hello-header/handler.lua",
    ["kong.plugins.hello-header.schema"] = "kong/plugins/hello-header/schema.lua",
  },
}
