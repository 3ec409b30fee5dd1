-- wrk script of bench/cutover-bench.py: tallies every response by its body
-- ("blue\n" or "green\n", the two backends' fixed bodies) and by status, in
-- total and per 100 ms of wall-clock time, so that a cutover shows as the
-- moment the colours cross.
--
-- wrk's Lua has no clock finer than a second (os.time) and os.clock is CPU
-- time, so the time comes from clock_gettime(CLOCK_REALTIME) through
-- LuaJIT's FFI (Debian's wrk is built on LuaJIT): a vDSO call, cheap enough
-- per response. CLOCK_REALTIME is the clock Python's time.time() reads, so
-- the buckets line up with the times at which the driver cut over.
--
-- A bucket is floor(epoch milliseconds / 100). Each wrk thread counts in its
-- own Lua state; done() gathers the threads' tables and prints one line per
-- bucket and a totals line, all starting with "CUTOVER ", after wrk's own
-- summary. Socket errors (connect, read, write, timeout) never reach Lua:
-- they are only in wrk's summary, as totals.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } cutover_timespec_t;
  int clock_gettime(int clk_id, cutover_timespec_t *tp);
]]
local CLOCK_REALTIME = 0
local ts = ffi.new("cutover_timespec_t")
local floor = math.floor

-- Per-thread tallies: flat tables keyed by bucket (thread:get copies them).
blue, green, other, failed = {}, {}, {}, {}
totals = { blue = 0, green = 0, other = 0, failed = 0 }

local function bucket()
  ffi.C.clock_gettime(CLOCK_REALTIME, ts)
  return floor((tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6) / 100)
end

function response(status, headers, body)
  local b = bucket()
  local t
  if status < 200 or status > 299 then
    t = failed
    totals.failed = totals.failed + 1
  elseif body == "blue\n" then
    t = blue
    totals.blue = totals.blue + 1
  elseif body == "green\n" then
    t = green
    totals.green = totals.green + 1
  else
    -- A 2xx with an unexpected body: not a failure, not a colour.
    t = other
    totals.other = totals.other + 1
  end
  t[b] = (t[b] or 0) + 1
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local sum = { blue = {}, green = {}, other = {}, failed = {} }
  local all = { blue = 0, green = 0, other = 0, failed = 0 }
  local keys = {}
  for _, thread in ipairs(threads) do
    for name, acc in pairs(sum) do
      for b, n in pairs(thread:get(name)) do
        if acc[b] == nil and sum.blue[b] == nil and sum.green[b] == nil
            and sum.other[b] == nil and sum.failed[b] == nil then
          table.insert(keys, b)
        end
        acc[b] = (acc[b] or 0) + n
      end
    end
    local t = thread:get("totals")
    for name, n in pairs(t) do
      all[name] = all[name] + n
    end
  end
  table.sort(keys)
  for _, b in ipairs(keys) do
    io.write(string.format("CUTOVER bucket %d %d %d %d %d\n", b,
      sum.blue[b] or 0, sum.green[b] or 0, sum.other[b] or 0,
      sum.failed[b] or 0))
  end
  io.write(string.format("CUTOVER totals %d %d %d %d\n", all.blue, all.green,
    all.other, all.failed))
end
