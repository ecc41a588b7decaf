-- hello-header: an example plugin packaged as a rock (see README.md).
-- Adds `X-Hello: <conf.greeting>` to every response of the routes, services
-- or consumers it is enabled on.

local HelloHeader = {
  PRIORITY = 1000,
  VERSION = "0.1.0",
}

function HelloHeader:header_filter(conf)
  kong.response.set_header("X-Hello", conf.greeting)
end

return HelloHeader
