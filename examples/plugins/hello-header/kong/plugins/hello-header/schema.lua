-- hello-header: the configuration schema.

local typedefs = require "kong.db.schema.typedefs"

return {
  name = "hello-header",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { greeting = {
              description = "The value of the X-Hello response header.",
              type = "string",
              default = "world",
              len_max = 256,
          } },
        },
    } },
  },
}
