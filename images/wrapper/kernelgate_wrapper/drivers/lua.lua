-- Lua driver of the wrapper kernel (protocol: kernelgate_wrapper/sessions.py), for lua5.4.
-- Each cell is a chunk loaded in the global environment, so globals and global functions
-- persist; a `local` at a cell's top level is local to that cell (a chunk is a function).
-- As in lua5.4's REPL, a cell that is an expression list (`1 + 1`, `x, y`) is run as
-- `return <cell>`; the values a cell returns are its result (text/plain: tostring of each,
-- tab-separated).  Errors: SyntaxError (load failed), RuntimeError (error() or any run-time
-- error; evalue is tostring of the error value), KeyboardInterrupt (SIGINT).
-- SIGINT is handled by kernelgate_lua_interrupt.so (images/lua), loaded below; without it
-- (outside the lua image) lua5.4's own handler stops a cell once, and a second SIGINT ends
-- the interpreter.
-- JSON: a small encoder/decoder of its own (Lua has none), enough for the protocol.

local commands = assert(io.open("/proc/self/fd/" .. assert(os.getenv("KERNELGATE_COMMAND_FD")), "r"))
local events = assert(io.open("/proc/self/fd/" .. assert(os.getenv("KERNELGATE_EVENT_FD")), "w"))
events:setvbuf("no")
io.stdout:setvbuf("no")
io.stderr:setvbuf("no")

local interrupt, own_handler
do
  local open = package.loadlib("/opt/kernelgate/lib/kernelgate_lua_interrupt.so",
                               "luaopen_kernelgate_interrupt")
  if open then
    interrupt, own_handler = open(), true
  else -- lua5.4's own handler: one interrupt only
    interrupt = { catch = function() end, ignore = function() return false end }
  end
end

-- ---------------------------------------------------------------------------- JSON

local json = {}

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

-- s with every byte that is not part of valid UTF-8 replaced by U+FFFD
local function valid_utf8(s)
  local parts, i = {}, 1
  while true do
    local n, bad = utf8.len(s, i)
    if n then
      parts[#parts + 1] = s:sub(i)
      return table.concat(parts)
    end
    parts[#parts + 1] = s:sub(i, bad - 1)
    parts[#parts + 1] = "\u{FFFD}"
    i = bad + 1
  end
end

local function encode_string(s)
  s = valid_utf8(s):gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end)
  return '"' .. s .. '"'
end

-- a non-empty table whose keys are 1..#t is an array; any other table is an object
local function is_array(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

function json.encode(value)
  local kind = type(value)
  if value == nil then
    return "null"
  elseif kind == "boolean" then
    return tostring(value)
  elseif kind == "number" then
    if math.type(value) == "integer" then return string.format("%d", value) end
    if value ~= value or value == math.huge or value == -math.huge then return "null" end
    return string.format("%.17g", value)
  elseif kind == "string" then
    return encode_string(value)
  elseif kind == "table" then
    local parts = {}
    if is_array(value) then
      for i = 1, #value do parts[i] = json.encode(value[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for k, v in pairs(value) do
      parts[#parts + 1] = encode_string(tostring(k)) .. ":" .. json.encode(v)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("json: cannot encode a " .. kind)
end

local unescapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                    r = "\r", t = "\t" }

-- decode(s): the value of the JSON text s; arrays and objects are tables (null is nil)
function json.decode(s)
  local pos = 1

  local function fail(what)
    error(string.format("json: %s at byte %d", what, pos), 0)
  end

  local function skip()
    pos = s:find("[^ \t\r\n]", pos) or #s + 1
  end

  local value

  local function hex4()
    local digits = s:match("^%x%x%x%x", pos)
    if not digits then fail("bad \\u escape") end
    pos = pos + 4
    return tonumber(digits, 16)
  end

  local function str()
    pos = pos + 1 -- the opening quote
    local parts = {}
    while true do
      local stop = s:find('["\\%c]', pos)
      if not stop then fail("unterminated string") end
      parts[#parts + 1] = s:sub(pos, stop - 1)
      local c = s:sub(stop, stop)
      pos = stop + 1
      if c == '"' then
        return table.concat(parts)
      elseif c == "\\" then
        local e = s:sub(pos, pos)
        pos = pos + 1
        if unescapes[e] then
          parts[#parts + 1] = unescapes[e]
        elseif e == "u" then
          local code = hex4()
          if code >= 0xD800 and code <= 0xDBFF and s:sub(pos, pos + 1) == "\\u" then
            local save = pos
            pos = pos + 2
            local low = hex4()
            if low >= 0xDC00 and low <= 0xDFFF then
              code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            else
              pos = save -- not a pair: the high half alone
            end
          end
          if code >= 0xD800 and code <= 0xDFFF then code = 0xFFFD end -- a lone surrogate
          parts[#parts + 1] = utf8.char(code)
        else
          fail("bad escape")
        end
      else
        fail("control character in string")
      end
    end
  end

  function value()
    skip()
    local c = s:sub(pos, pos)
    if c == "{" then
      local object = {}
      pos = pos + 1
      skip()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return object end
      while true do
        skip()
        if s:sub(pos, pos) ~= '"' then fail("expected a key") end
        local key = str()
        skip()
        if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        object[key] = value()
        skip()
        c = s:sub(pos, pos)
        pos = pos + 1
        if c == "}" then return object end
        if c ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local array = {}
      pos = pos + 1
      skip()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return array end
      while true do
        array[#array + 1] = value()
        skip()
        c = s:sub(pos, pos)
        pos = pos + 1
        if c == "]" then return array end
        if c ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    end
    for literal, result in pairs({ ["true"] = true, ["false"] = false, null = json }) do
      if s:sub(pos, pos + #literal - 1) == literal then
        pos = pos + #literal
        if result == json then return nil end
        return result
      end
    end
    local number = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if number and number ~= "" and tonumber(number) then
      pos = pos + #number
      return math.tointeger(tonumber(number)) or tonumber(number)
    end
    fail("unexpected character")
  end

  local result = value()
  skip()
  if pos <= #s then fail("trailing characters") end
  return result
end

-- ---------------------------------------------------------------------------- cells

local function error_reply(ename, evalue, traceback)
  return { status = "error", ename = ename, evalue = evalue,
           traceback = traceback or { ename .. ": " .. evalue } }
end

-- the text of an error value (as lua5.4 shows one)
local function describe(err)
  if type(err) == "string" or type(err) == "number" then return tostring(err) end
  local meta = getmetatable(err)
  if meta and meta.__tostring then
    local ok, text = pcall(tostring, err)
    if ok and type(text) == "string" then return text end
  end
  return string.format("(error object is a %s value)", type(err))
end

-- error handler: the message and the traceback without the driver's frames
local function handler(err)
  local message = describe(err)
  local lines = {}
  for line in (debug.traceback(message, 2) .. "\n"):gmatch("(.-)\n") do
    if line:find("^%s*%[C%]: in function 'xpcall'") then break end
    lines[#lines + 1] = line
  end
  return { message = message, lines = lines }
end

local function evaluate(request)
  local code, label = request.code, request.label
  -- an expression list is returned, as in lua5.4's REPL
  local chunk = load("return " .. code, "=" .. label, "t")
  if not chunk then
    local err
    chunk, err = load(code, "=" .. label, "t")
    if not chunk then return error_reply("SyntaxError", err) end
  end
  local results = table.pack(xpcall(chunk, handler))
  if not results[1] then
    if type(results[2]) ~= "table" then -- the handler failed (e.g. interrupted in it)
      return error_reply("RuntimeError", describe(results[2]))
    end
    local lines = results[2].lines
    lines[1] = "RuntimeError: " .. (lines[1] or results[2].message)
    return error_reply("RuntimeError", results[2].message, lines)
  end
  if results.n == 1 then return { status = "ok" } end
  local ok, text = xpcall(function() -- tostring may run a __tostring metamethod
    local texts = {}
    for i = 2, results.n do texts[#texts + 1] = tostring(results[i]) end
    return table.concat(texts, "\t")
  end, handler)
  if not ok then return error_reply("RuntimeError", type(text) == "table" and text.message or describe(text)) end
  return { status = "ok", data = { ["text/plain"] = text } }
end

while true do
  local line = commands:read("l")
  if line == nil then break end
  local request = json.decode(line)
  local done, reply = pcall(function()
    interrupt.catch()
    local reply = evaluate(request)
    local interrupted = interrupt.ignore()
    return { reply, interrupted }
  end)
  local interrupted
  if done then
    reply, interrupted = reply[1], reply[2]
  else -- interrupted in the driver's own code, outside the cell
    interrupt.ignore()
    reply, interrupted = error_reply("KeyboardInterrupt", describe(reply)), true
  end
  if reply.status == "error" and (interrupted or
      (not own_handler and reply.evalue:find("interrupted!$"))) then
    reply.ename = "KeyboardInterrupt"
    reply.traceback[1] = reply.traceback[1]:gsub("^RuntimeError", "KeyboardInterrupt")
  end
  io.stdout:flush()
  events:write(json.encode(reply), "\n")
end
