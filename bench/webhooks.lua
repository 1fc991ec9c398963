-- Posts pre-signed webhook events, each one once. Every wrk thread takes its
-- own share of the lines of the file named by the first argument.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  local total = tonumber(args[2])
  requests = {}
  local line_number = 0
  for line in file:lines() do
    if line_number % total == index then
      local timestamp, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      table.insert(requests, wrk.format("POST", "/webhooks/message", {
        ["Content-Type"] = "application/json",
        ["telnyx-timestamp"] = timestamp,
        ["telnyx-signature-ed25519"] = signature,
      }, body))
    end
    line_number = line_number + 1
  end
  file:close()
  count = #requests
  position = 0
  used = 0
end

function request()
  position = position % #requests + 1
  used = used + 1
  return requests[position]
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    if thread:get("used") > thread:get("count") then
      io.stderr:write("warning: a thread ran out of unique events\n")
    end
  end
end
