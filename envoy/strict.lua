-- Pinexa's strict REST edge: Envoy's Lua filter, run before grpc_json_transcoder (issue 8).
--
-- The transcoder follows the proto3 JSON mapping's lenient default: it drops unknown JSON fields
-- (so a typo like "dispaly_name" under an update mask silently clears a field), and it passes
-- invalid UTF-8 on to the services. It has no option to refuse either, so this filter does, for
-- REST requests only (native gRPC passes through; the services answer a message that does not
-- parse with INVALID_ARGUMENT themselves):
--   1. the path and query string, percent-decoded, and the JSON body must be valid UTF-8: no
--      invalid bytes, no overlong encodings, no surrogates (CESU-8/WTF-8), and no JSON \uD800
--      escape that is not half of a pair;
--   2. every query parameter must name a field the route takes from the query;
--   3. every key of the JSON body, at every depth, must name a field of the message there (proto
--      name or lowerCamel json_name); free-form fields (Struct, Value, maps) take any keys.
-- Refusals are 400 google.rpc.Status JSON: ErrorInfo INVALID_REQUEST (domain envoy) and, for
-- unknown fields, a google.rpc.BadRequest naming each of them. Nothing reaches a service.
--
-- Which fields each route takes comes from the generated table above this code
-- (generated/edge_schema.lua, written by `make generate` from the descriptor set).
--
-- Hand-written scanning, on purpose: Envoy's Lua is LuaJIT (Lua 5.1) with no JSON library and no
-- utf8 module, and a filter may not load C modules. Every scan is a linear pass that first jumps
-- over plain ASCII with string.find, so a GET without a body costs a route lookup and a pattern
-- search over the path, and a body is scanned once.

local MAX_VIOLATIONS = 50

-- UTF-8 as RFC 3629 defines it (what protobuf requires of a string): returns true if valid.
local function valid_utf8(s)
  local i = s:find("[\128-\255]")
  local n = #s
  local byte = string.byte
  while i do
    local c = byte(s, i)
    local need, lo, hi = 0, 0x80, 0xBF
    if c >= 0xC2 and c <= 0xDF then need = 1
    elseif c == 0xE0 then need, lo = 2, 0xA0            -- no overlong 3-byte forms
    elseif c == 0xED then need, hi = 2, 0x9F            -- no surrogates U+D800..U+DFFF
    elseif c >= 0xE1 and c <= 0xEF then need = 2
    elseif c == 0xF0 then need, lo = 3, 0x90            -- no overlong 4-byte forms
    elseif c >= 0xF1 and c <= 0xF3 then need = 3
    elseif c == 0xF4 then need, hi = 3, 0x8F            -- nothing past U+10FFFF
    else return false end                               -- 0x80..0xC1 (incl. overlong 2-byte), 0xF5..
    if i + need > n then return false end
    local c1 = byte(s, i + 1)
    if c1 < lo or c1 > hi then return false end
    for k = 2, need do
      local ck = byte(s, i + k)
      if ck < 0x80 or ck > 0xBF then return false end
    end
    i = s:find("[\128-\255]", i + need + 1)
  end
  return true
end

-- JSON \u escapes must not encode a lone surrogate. Backslashes only occur inside strings in
-- valid JSON (anything else is the transcoder's to refuse), so a scan of escapes is enough.
local function valid_escapes(s)
  if not s:find("\\u[dD][89abcdefABCDEF]") then return true end
  local i = 1
  while true do
    local k = s:find("\\", i, true)
    if not k then return true end
    if s:byte(k + 1) == 117 then -- u
      local cp = tonumber(s:sub(k + 2, k + 5), 16) or 0
      if cp >= 0xDC00 and cp <= 0xDFFF then return false end
      if cp >= 0xD800 and cp <= 0xDBFF then
        if s:sub(k + 6, k + 7) ~= "\\u" then return false end
        local low = tonumber(s:sub(k + 8, k + 11), 16) or 0
        if low < 0xDC00 or low > 0xDFFF then return false end
        i = k + 12
      else
        i = k + 6
      end
    else
      i = k + 2
    end
  end
end

local function unescape_url(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

local function refuse(handle, message, unknown)
  local details = '{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"INVALID_REQUEST","domain":"envoy"}'
  if unknown and #unknown > 0 then
    local items = {}
    for k, field in ipairs(unknown) do
      items[k] = '{"field":' .. json_string(field) .. ',"description":"unknown field"}'
    end
    details = details .. ',{"@type":"type.googleapis.com/google.rpc.BadRequest","field_violations":['
      .. table.concat(items, ",") .. "]}"
  end
  handle:respond(
    { [":status"] = "400", ["content-type"] = "application/json" },
    '{"code":3,"message":' .. json_string(message) .. ',"details":[' .. details .. "]}"
  )
end

-- A minimal JSON walker: it follows objects and arrays and skips everything else. It never
-- decides whether the JSON is well-formed (the transcoder does); on anything it does not expect
-- it stops and lets the request through to the transcoder.
local function skip_ws(s, i)
  return s:find("[^ \t\r\n]", i) or (#s + 1)
end

local function end_of_string(s, i) -- s[i] is the opening quote; returns the index after the closing one
  local j = i + 1
  while true do
    local k = s:find('["\\]', j)
    if not k then return nil end
    if s:byte(k) == 34 then return k + 1 end
    j = k + 2
  end
end

local skip_value
local function skip_container(s, i) -- s[i] is { or [; returns the index after its match
  local depth = 0
  local j = i
  while true do
    local k = s:find('[{}%[%]"]', j)
    if not k then return nil end
    local c = s:byte(k)
    if c == 34 then
      j = end_of_string(s, k)
      if not j then return nil end
    else
      if c == 123 or c == 91 then depth = depth + 1 else depth = depth - 1 end
      j = k + 1
      if depth == 0 then return j end
    end
  end
end

skip_value = function(s, i)
  local c = s:byte(i)
  if c == 34 then return end_of_string(s, i) end
  if c == 123 or c == 91 then return skip_container(s, i) end
  return s:find("[,}%] \t\r\n]", i) or (#s + 1)
end

local function key_text(raw)
  if not raw:find("\\", 1, true) then return raw end
  -- An escaped key: decode the escapes that can spell an ASCII field name; others stay unknown.
  return (raw:gsub("\\u(%x%x%x%x)", function(h)
    local cp = tonumber(h, 16)
    if cp < 128 then return string.char(cp) end
    return "\\u" .. h
  end):gsub("\\([\"\\/])", "%1"))
end

local check_object
local function check_value(s, i, kind, path, unknown)
  -- kind: 1 scalar, 0 free-form, "map:<message>", or a message name
  if kind == 1 or kind == 0 then return skip_value(s, i) end
  local c = s:byte(i)
  if c == 91 then -- a list: check each element
    local j = skip_ws(s, i + 1)
    local index = 0
    local base = path:sub(1, -2) -- without its trailing dot
    if s:byte(j) == 93 then return j + 1 end
    while true do
      j = check_value(s, j, kind, base .. "[" .. index .. "].", unknown)
      if not j then return nil end
      j = skip_ws(s, j)
      local d = s:byte(j)
      if d == 93 then return j + 1 end
      if d ~= 44 then return nil end
      j = skip_ws(s, j + 1)
      index = index + 1
    end
  end
  if c ~= 123 then return skip_value(s, i) end
  if type(kind) == "string" and kind:sub(1, 4) == "map:" then
    return check_object(s, i, nil, kind:sub(5), path, unknown)
  end
  local fields = MESSAGES[kind]
  if not fields then return skip_value(s, i) end -- not in the table: let it through
  return check_object(s, i, fields, nil, path, unknown)
end

-- Walks the object at s[i]: with `fields`, every key must be one; with `values`, keys are free
-- and every value is a `values` message (a map). Returns the index after the object.
check_object = function(s, i, fields, values, path, unknown)
  local j = skip_ws(s, i + 1)
  if s:byte(j) == 125 then return j + 1 end
  while true do
    if s:byte(j) ~= 34 then return nil end
    local after = end_of_string(s, j)
    if not after then return nil end
    local key = key_text(s:sub(j + 1, after - 2))
    j = skip_ws(s, after)
    if s:byte(j) ~= 58 then return nil end
    j = skip_ws(s, j + 1)
    if values then
      j = check_value(s, j, values, path .. key .. ".", unknown)
    else
      local kind = fields[key]
      if kind == nil then
        if #unknown < MAX_VIOLATIONS then unknown[#unknown + 1] = path .. key end
        j = skip_value(s, j)
      else
        j = check_value(s, j, kind, path .. key .. ".", unknown)
      end
    end
    if not j then return nil end
    j = skip_ws(s, j)
    local d = s:byte(j)
    if d == 125 then return j + 1 end
    if d ~= 44 then return nil end
    j = skip_ws(s, j + 1)
  end
end

-- As the transcoder does, a path ending in one of the API's custom verbs (`/users/X:signOut`) is
-- that verb's path only: it is not also `/users/{id}` with the id "X:signOut" (so a wrong method
-- there is the edge's 405, not this filter's field check against another method's message).
local function find_route(method, path)
  local verb = path:match(":([^/:]+)$")
  if verb and not VERBS[verb] then verb = nil end
  for _, route in ipairs(ROUTES) do
    if route.method == method and route.verb == verb and path:find(route.pattern) then return route end
  end
  return nil
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local content_type = headers:get("content-type") or ""
  if content_type:sub(1, 16) == "application/grpc" then return end -- native gRPC

  local full_path = headers:get(":path") or ""
  local query_at = full_path:find("?", 1, true)
  local path = query_at and full_path:sub(1, query_at - 1) or full_path
  local query = query_at and full_path:sub(query_at + 1) or ""
  if full_path:find("[%%\128-\255]") then
    local decoded = unescape_url(full_path)
    if not valid_utf8(decoded) then
      return refuse(handle, "the request path or query is not valid UTF-8")
    end
  end

  local route = find_route(headers:get(":method") or "", path)
  if not route then return end -- the transcoder or the router answers (404 and the like)

  local unknown = {}
  if query ~= "" then
    for pair in query:gmatch("[^&]+") do
      local name = unescape_url((pair:match("^[^=]*"):gsub("%+", " ")))
      if name ~= "" and not route.query[name] and #unknown < MAX_VIOLATIONS then
        unknown[#unknown + 1] = name
      end
    end
  end

  if route.body and headers:get("content-length") ~= "0" then
    local body = handle:body()
    local length = body and body:length() or 0
    if length > 0 then
      local text = body:getBytes(0, length)
      if not valid_utf8(text) then
        return refuse(handle, "the request body is not valid UTF-8")
      end
      if not valid_escapes(text) then
        return refuse(handle, "the request body has a \\u escape that is half of a surrogate pair")
      end
      local start = skip_ws(text, 1)
      if text:byte(start) == 123 then
        check_object(text, start, MESSAGES[route.body], nil, route.prefix, unknown)
      end
    end
  end

  if #unknown > 0 then
    return refuse(handle, "unknown field: " .. table.concat(unknown, ", "), unknown)
  end
end
