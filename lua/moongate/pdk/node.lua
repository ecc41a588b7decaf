-- kong.node -- this node's identity: a UUID stable across restarts (kept
-- in <prefix>/node.id, Kong keeps kong.id) and the host name.
--
-- The id is settled when the runloop initialises -- in the master, before
-- the workers fork -- so every worker of a process reports the same one.
-- Without a prefix (unit specs) it lives in memory only.

local _M = {}

local node_id, hostname

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local s = f:read("*a")
    f:close()
    return s
end

local function read_file_n(path, n)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local s = f:read(n)
    f:close()
    return s
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-" ..
             "%x%x%x%x%x%x%x%x%x%x%x%x$"

--- A random version 4 UUID (from /dev/urandom, else math.random).
function _M.uuid()
    local bytes = read_file_n("/dev/urandom", 16)
    local b = {}
    for i = 1, 16 do
        b[i] = bytes and bytes:byte(i) or math.random(0, 255)
    end
    b[7] = b[7] % 16 + 0x40
    b[9] = b[9] % 64 + 0x80
    local id = string.format("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-" ..
                             "%02x%02x%02x%02x%02x%02x",
                             (unpack or table.unpack)(b))
    return id
end

--- Settle the node id: read <prefix>/node.id, or create it.
function _M.init(prefix)
    if node_id then
        return node_id
    end
    if type(prefix) == "string" and prefix ~= "" then
        local path = prefix .. "/node.id"
        local s = read_file(path)
        s = s and s:match("^%s*(.-)%s*$")
        if s and s:match(UUID) then
            node_id = s
            return node_id
        end
        local id = _M.uuid()
        local tmp = path .. ".tmp." .. tostring(os.time()) ..
                    tostring(math.random(1e6))
        local f = io.open(tmp, "wb")
        if f then
            f:write(id, "\n")
            f:close()
            os.rename(tmp, path)
            -- another process may have won the race: use what is there
            s = read_file(path)
            s = s and s:match("^%s*(.-)%s*$")
            node_id = (s and s:match(UUID)) and s or id
            return node_id
        end
    end
    node_id = _M.uuid()
    return node_id
end

function _M.get_id()
    return node_id or _M.init(nil)
end

function _M.get_hostname()
    if not hostname then
        local s = read_file("/proc/sys/kernel/hostname")
        s = s and s:match("^%s*(.-)%s*$")
        if not s or s == "" then
            s = os.getenv("HOSTNAME")
        end
        if not s or s == "" then
            local p = io.popen("hostname 2>/dev/null")
            if p then
                s = p:read("*l")
                p:close()
            end
        end
        hostname = s or "localhost"
    end
    return hostname
end

return _M
