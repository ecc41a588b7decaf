-- moongate.admin.json -- the Admin API's JSON encoder is moongate.json
-- (shared with the entity store, which writes its rows with it).
return require "moongate.json"
