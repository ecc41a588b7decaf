-- mg-header-rewrite: the configuration schema.

local typedefs = require "kong.db.schema.typedefs"

local function changes(what)
  return {
    type = "record",
    description = "Header changes of the " .. what .. ".",
    fields = {
      { remove = {
          type = "array",
          description = "Headers to remove (applied first).",
          default = {},
          elements = typedefs.header_name,
      } },
      { set = {
          type = "map",
          description = "Headers to set, replacing any value they had.",
          default = {},
          keys = typedefs.header_name,
          values = { type = "string", description = "The header's value." },
      } },
      { add = {
          type = "map",
          description = "Headers to add after any value they already have.",
          default = {},
          keys = typedefs.header_name,
          values = { type = "string", description = "The value to add." },
      } },
    },
  }
end

return {
  name = "mg-header-rewrite",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        description = "Request (to the upstream) and response (to the " ..
                      "client) header changes.",
        fields = {
          { request = changes("request sent to the upstream") },
          { response = changes("response sent to the client") },
        },
    } },
  },
}
