#!lua name=router_ledger_v3
--
-- The Redis Functions of the shared ledger (redis_ledger.h). Loaded with FUNCTION LOAD REPLACE by
-- every replica at start and again whenever Redis answers "Function not found" (a restart without
-- persistence). Embedded in routerd at build time (ledger_lua.h is generated from this file).
--
-- Every function is one atomic step: it reads the Redis server's clock (TIME), checks the
-- incarnation, detects a rollback, expires a bounded number of overdue holds and commits, validates
-- everything it was given, and only then writes. Money is integer micro-USD; time is integer
-- microseconds of the Redis clock.
--
-- Keys: KEYS[1..10] are the keys of one budget domain D, all under the hash tag {rt:D}, in the
-- order below, so every key a call touches is in one hash slot (Redis Cluster-legal).
--   meta    hash: inc (incarnation), layout, seq (bumped by every call), guard (conservative until,
--           us), ncommit, nhold (id counters), open (open leases), gone (leases expired without a
--           Complete and remembered), expired (leases expired without a Complete, in all),
--           rollbacks, losses, reserved, recorded (totals, micro-USD), e<hold> (escrows)
--   bucket  hash: level (micro-USD, may be negative), t (us of the last refill), held (micro-USD)
--   holds   hash: hold number -> "expiry|spend|model|count|model|count..."
--   hexp    zset: hold number by expiry
--   commits hash: the leases of one commit c, in two fields (a commit's leases share one expiry):
--           r<c> = "<expiry>|<model count>|", then "<length>|<name>" per model, then one
--           fixed-width entry per lease (ENTRY characters: the model's index from 1 in 4 digits,
--           micro-USD in 16, the tag's 16 characters, and 1 when the model has a slot limit, else
--           0); d<c> = one character per lease: 0 open (or, once the commit expired, expired
--           without a Complete), 1 completed, 2 completed late. After the entries, a record of a
--           commit that fits one record ends with the commit's totals, so that it expires without
--           reading its entries while none completed: "<micro-USD>|", a models header as above of
--           the models with a slot limit, then "<leases>|" per such model (builds before wrote no
--           totals and read no further than the entries; a record without them expires entry by
--           entry). Lease k of commit c is number c * PER_COMMIT + k (k from 1; exact in Lua's
--           numbers for 2^41 commits).
--   cexp    zset: commit number by expiry, while it has open leases
--   gexp    zset: expired commit number by when it expired, while remembered for a late Complete
--           (oldest forgotten first)
--   held    hash: model -> slots held by open holds
--   used    hash: model -> open leases of the model (models with a slot limit)
--   win     hash: n (current inline window), opened, arrivals, dur, seen, s<n> (spend of window n)
--
-- Arguments common to every function: ARGV[1] the incarnation the caller knows ("" = none yet),
-- ARGV[2] the highest seq the caller has seen, ARGV[3] the caller's lease timeout (us; the length
-- of the conservative period after a detected loss).
--
-- Errors (error replies, first word): LOST (no state, or another incarnation), FENCED (an expired
-- or unknown hold), NOFIT (not enough free slots, spend or window budget), INVALID (bad input),
-- NOTFOUND (unknown model or lease).

-- The layout of the keys below. Each version has its own library and function names (so a replica
-- of another version loading its library replaces nothing of this one), and a state created by one
-- version is refused by the others (LAYOUT), so two versions never write the same keys.
local LAYOUT = '3'
local REAP_COMMITS = 16 -- most commits expired per call
local REAP_LEASES = 256 -- a call expires no further commit once it expired this many leases
local REAP_HOLDS = 64 -- most holds expired per call
local FORGET_COMMITS = 32 -- most expired commits forgotten per call
local PER_COMMIT = 4096 -- lease numbers per commit number: at most PER_COMMIT - 1 leases a record
local ENTRY = 37 -- characters of a lease's entry in its commit's record
local MAX_MICROS = 1000000000000000 -- largest predicted cost of a lease (micro-USD: 1e9 USD)
local WINDOWS_KEPT = 8 -- inline windows whose spend is remembered
local MAX_STEP = 1024 -- most commits, and most arrivals, of one inline step (ledger.h)
local MAX_COMPLETES = 64 -- most Completes of one call (redis_ledger.h)

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function split(s)
  local out = {}
  local start = 1
  while true do
    local bar = string.find(s, '|', start, true)
    if bar == nil then
      out[#out + 1] = string.sub(s, start)
      return out
    end
    out[#out + 1] = string.sub(s, start, bar - 1)
    start = bar + 1
  end
end

-- An integer as a string, exactly: Lua's own conversion keeps 14 significant digits (a time in
-- microseconds has 16), and Redis formats every number argument of a command again ("%.17g", the
-- costliest part of a command with many). Every integer written into a record or passed in bulk
-- goes through here.
local function int_str(n)
  return string.format('%d', n)
end

local function int_arg(v, what)
  local n = tonumber(v)
  if n == nil or n ~= math.floor(n) then
    error({err = 'INVALID ' .. what .. ': not an integer'})
  end
  return n
end

local K = {}

local function bind(keys)
  K.meta, K.bucket, K.holds, K.hexp, K.commits = keys[1], keys[2], keys[3], keys[4], keys[5]
  K.cexp, K.gexp, K.held, K.used, K.win = keys[6], keys[7], keys[8], keys[9], keys[10]
  K.guard = nil -- the domain's guard (us) once `check` read it in this call
end

-- HINCRBY that skips a zero delta (Lua formats -0 as "-0", which Redis refuses as an integer).
local function incr(key, field, delta)
  if delta ~= 0 then redis.call('HINCRBY', key, field, delta) end
end

local function bump()
  return redis.call('HINCRBY', K.meta, 'seq', 1)
end

-- Checks the incarnation and the sequence; a caller that saw a higher sequence than Redis holds
-- means Redis rolled back (an older append-only file, a failover): the ledger goes conservative.
local function check(args, now)
  local meta = redis.call('HMGET', K.meta, 'inc', 'layout', 'seq', 'guard')
  local inc, layout = meta[1], meta[2]
  if not inc then
    error({err = 'LOST no ledger state for this domain (Redis restarted empty or was flushed)'})
  end
  if args[1] ~= '' and args[1] ~= inc then
    error({err = 'LOST the ledger state was replaced (another incarnation)'})
  end
  if layout ~= LAYOUT then
    error({err = 'ERR the ledger state has layout ' .. tostring(layout) .. '; this routerd writes layout ' ..
            LAYOUT .. ' (upgrade or downgrade every replica of the domain together)'})
  end
  local seen = int_arg(args[2], 'seen')
  local seq = tonumber(meta[3] or '0')
  local guard = tonumber(meta[4] or '0')
  if seen > seq then
    local lease_us = int_arg(args[3], 'lease_us')
    if now + lease_us > guard then guard = now + lease_us end
    local level = tonumber(redis.call('HGET', K.bucket, 'level') or '0')
    if level > 0 then redis.call('HSET', K.bucket, 'level', 0) end
    redis.call('HSET', K.meta, 'guard', guard, 'seq', seen)
    incr(K.meta, 'rollbacks', 1)
  end
  K.guard = guard
  return inc
end

-- Whether the domain is in its conservative period. Only `check` and `init` write the guard, and
-- every function but `init` checks first, so the value `check` read holds for the whole call.
local function guarded(now)
  if K.guard == nil then error('ledger.lua: guarded() called before check()') end
  return now < K.guard
end

-- The slots of a hold's record split at '|' ("expiry|spend|model|count|..."), by model.
local function hold_slots(f)
  local out = {}
  local j = 3
  while j < #f do
    out[f[j]] = tonumber(f[j + 1])
    j = j + 2
  end
  return out
end

-- Gives back what a hold holds and forgets it.
local function drop_hold(number, rec)
  local f = split(rec)
  local spend = tonumber(f[2])
  if spend > 0 then incr(K.bucket, 'held', -spend) end
  local i = 3
  while i < #f do
    incr(K.held, f[i], -tonumber(f[i + 1]))
    i = i + 2
  end
  redis.call('HDEL', K.holds, number)
  redis.call('ZREM', K.hexp, number)
end

-- The models of a record's header, read from `at` ("<count>|", then "<length>|<name>" per model):
-- the models by index and where the entries start; nil when the header is malformed.
local function parse_models(s, at)
  local count, next_at = string.match(s, '^(%d+)|()', at)
  if count == nil then return nil end
  local models = {}
  for i = 1, tonumber(count) do
    local len, name_at = string.match(s, '^(%d+)|()', next_at)
    if len == nil then return nil end
    next_at = name_at + tonumber(len)
    if next_at - 1 > #s then return nil end
    models[i] = string.sub(s, name_at, next_at - 1)
  end
  return models, next_at
end

-- A commit's record (r<c> of `commits`) read: its expiry, its models by index, and where its
-- entries start.
local function parse_record(rec)
  local expiry, at = string.match(rec, '^(%d+)|()')
  local models, entries_at = parse_models(rec, at)
  return tonumber(expiry), models, entries_at
end

-- Lease k's entry of a parsed record: model, micro-USD, tag, tracked.
local function entry(rec, models, at, k)
  local e = at + (k - 1) * ENTRY
  return models[tonumber(string.sub(rec, e, e + 3))], tonumber(string.sub(rec, e + 4, e + 19)),
         string.sub(rec, e + 20, e + 35), string.byte(rec, e + 36) == 49
end

-- Adds `count` (default 1) to t[key]; `order` lists the keys in the order they were first seen, so
-- that the writes made from t follow the input's order (deterministic, as Redis replicates a
-- Function's writes).
local function tally(t, order, key, count)
  if t[key] == nil then
    t[key] = 0
    order[#order + 1] = key
  end
  t[key] = t[key] + (count or 1)
end

-- A models header as parse_models reads it, of the model names in `names`.
local function format_models(names)
  local parts = {#names, '|'}
  for _, m in ipairs(names) do parts[#parts + 1] = #m .. '|' .. m end
  return table.concat(parts)
end

-- A commit's totals as its record ends with them: its `micros` and, of the models in `order`, the
-- leases counted in `used`.
local function format_totals(micros, used, order)
  local parts = {int_str(micros), '|', format_models(order)}
  for _, m in ipairs(order) do parts[#parts + 1] = used[m] .. '|' end
  return table.concat(parts)
end

-- The totals a record ends with, from `at`: micro-USD, the models, and the leases of each.
local function parse_totals(rec, at)
  local micros, models_at = string.match(rec, '^(%d+)|()', at)
  local models, counts_at = parse_models(rec, models_at)
  local counts = {}
  for count in string.gmatch(string.sub(rec, counts_at), '(%d+)|') do
    counts[#counts + 1] = tonumber(count)
  end
  return tonumber(micros), models, counts
end

-- Writes n leases expiring at `expiry_s`: `head` is a record's models header ("<count>|", then
-- "<length>|<name>" per model) and `body` the n leases' entries (ENTRY characters each), one record
-- per PER_COMMIT - 1 of them, each with the whole header; `used` counts the leases of models with a
-- slot limit by model, listed in `order`, and `micros` is the sum of their micro-USD. Counts them
-- open and in use. Returns their lease numbers.
local function write_leases(head, body, n, expiry_s, used, order, micros)
  local numbers = {}
  local first = 1
  while first <= n do
    local last = math.min(n, first + PER_COMMIT - 2)
    local c = redis.call('HINCRBY', K.meta, 'ncommit', 1)
    local c_s = int_str(c)
    local entries = (first == 1 and last == n) and body .. format_totals(micros, used, order) or
                      string.sub(body, (first - 1) * ENTRY + 1, last * ENTRY)
    redis.call('HSET', K.commits, 'r' .. c_s, expiry_s .. '|' .. head .. entries,
               'd' .. c_s, string.rep('0', last - first + 1))
    redis.call('ZADD', K.cexp, expiry_s, c_s)
    for k = first, last do numbers[k] = c * PER_COMMIT + k - first + 1 end
    first = last + 1
  end
  for _, m in ipairs(order) do redis.call('HINCRBY', K.used, m, used[m]) end
  incr(K.meta, 'open', n)
  return numbers
end

-- Leases (each {model, micro-USD, tag, tracked}) as write_leases takes them: header, entries, and
-- the tracked ones counted by model.
local function pack_leases(leases)
  local index, names, body, used, order = {}, {}, {}, {}, {}
  for k, l in ipairs(leases) do
    local i = index[l[1]]
    if i == nil then
      names[#names + 1] = l[1]
      i = #names
      index[l[1]] = i
    end
    body[k] = string.format('%04d%016d', i, l[2]) .. l[3] .. (l[4] and '1' or '0')
    if l[4] then tally(used, order, l[1]) end
  end
  return format_models(names), table.concat(body), used, order
end

-- What is wrong with what a lease's entry holds in fixed width, or nil: its tag (16 characters;
-- replicas make 16 lowercase hex digits) and its predicted cost. `where` names the lease.
local function lease_problem(tag, micros, where)
  if #tag ~= 16 then return where .. '.tag: 16 characters' end
  if micros < 0 or micros > MAX_MICROS then
    return where .. '.predicted_cost_usd: must be in [0, 1e9]'
  end
  return nil
end

-- Expires the commits `cs` (numbers, overdue): their open leases are charged their predicted cost
-- and give back their slots; a commit is remembered for a late Complete (in gexp) while it has
-- such leases and max_gone > 0. Stops once `most` leases were expired (at least one commit).
local function expire_commits(cs, now, max_gone, most)
  if #cs == 0 then return end
  local fields = {}
  for _, c in ipairs(cs) do
    fields[#fields + 1] = 'r' .. c
    fields[#fields + 1] = 'd' .. c
  end
  local recs = redis.call('HMGET', K.commits, unpack(fields))
  local done_cs, drop, gone_at = {}, {}, {}
  local used, order = {}, {}
  local expired, micros_total = 0, 0
  local now_s = int_str(now)
  for i, c in ipairs(cs) do
    local rec, d = recs[2 * i - 1], recs[2 * i]
    done_cs[#done_cs + 1] = c
    local open = 0
    if rec and d then
      local _, models, at = parse_record(rec)
      local totals_at = at + #d * ENTRY
      if totals_at <= #rec and not string.find(d, '[^0]') then
        -- No lease of it completed: its totals are what expires.
        local micros, tracked, counts = parse_totals(rec, totals_at)
        open = #d
        micros_total = micros_total + micros
        for j, m in ipairs(tracked) do tally(used, order, m, counts[j]) end
      else
        local k = string.find(d, '0', 1, true)
        while k do
          local model, micros, _, is_tracked = entry(rec, models, at, k)
          open = open + 1
          micros_total = micros_total + micros
          if is_tracked then tally(used, order, model) end
          k = string.find(d, '0', k + 1, true)
        end
      end
    end
    expired = expired + open
    if open > 0 and max_gone > 0 then
      gone_at[#gone_at + 1] = now_s
      gone_at[#gone_at + 1] = c
    else
      drop[#drop + 1] = 'r' .. c
      drop[#drop + 1] = 'd' .. c
    end
    if expired >= most then break end
  end
  redis.call('ZREM', K.cexp, unpack(done_cs))
  for _, m in ipairs(order) do redis.call('HINCRBY', K.used, m, -used[m]) end
  if #drop > 0 then redis.call('HDEL', K.commits, unpack(drop)) end
  if #gone_at > 0 then
    redis.call('ZADD', K.gexp, unpack(gone_at))
    incr(K.meta, 'gone', expired)
  end
  incr(K.meta, 'open', -expired)
  incr(K.meta, 'reserved', -micros_total)
  incr(K.meta, 'recorded', micros_total)
  incr(K.meta, 'expired', expired)
end

-- Forgets the oldest expired commits while more than max_gone leases are remembered, at most
-- FORGET_COMMITS per call (so no call pays for a large backlog at once). A commit at a time: a call
-- may forget more than the excess.
local function forget(max_gone)
  for _ = 1, FORGET_COMMITS do
    if tonumber(redis.call('HGET', K.meta, 'gone') or '0') <= max_gone then return end
    local old = redis.call('ZPOPMIN', K.gexp)
    if #old == 0 then return end
    local c = old[1]
    local d = redis.call('HGET', K.commits, 'd' .. c)
    if d then
      local _, left = string.gsub(d, '0', '')
      incr(K.meta, 'gone', -left)
    end
    redis.call('HDEL', K.commits, 'r' .. c, 'd' .. c)
  end
end

-- Expires overdue holds and commits, a bounded number per call; the rest wait for the next call
-- (slots stay taken meanwhile: conservative).
local function reap(now, max_gone)
  local hs = redis.call('ZRANGEBYSCORE', K.hexp, '-inf', now, 'LIMIT', 0, REAP_HOLDS)
  for _, number in ipairs(hs) do
    local rec = redis.call('HGET', K.holds, number)
    if rec then
      -- An escrow's held spend is charged when it expires: its replica may have spent it.
      local e = redis.call('HGET', K.meta, 'e' .. number)
      if e then
        local held = tonumber(string.match(rec, '^[^|]*|(%d+)'))
        if held > 0 then incr(K.bucket, 'level', -held) end
        local f = split(e)
        redis.call('HSET', K.meta, 'e' .. number, f[1] .. '|' .. f[2] .. '|1')
      end
      drop_hold(number, rec)
    else
      redis.call('ZREM', K.hexp, number)
    end
  end
  expire_commits(redis.call('ZRANGEBYSCORE', K.cexp, '-inf', now, 'LIMIT', 0, REAP_COMMITS), now,
                 max_gone, REAP_LEASES)
  forget(max_gone)
end

-- Refills the paced bucket to `now`; returns its level. rate: micro-USD per second (0 = no
-- pacing), burst: micro-USD.
local function refill(now, rate, burst)
  local b = redis.call('HMGET', K.bucket, 'level', 't')
  local level = tonumber(b[1] or burst)
  local t = tonumber(b[2] or now)
  if rate > 0 and now > t then
    local need = burst - level
    if need <= 0 then
      t = now
    else
      local dt = now - t
      local full_after = math.ceil(need * 1000000 / rate)
      if dt >= full_after then
        level = burst
        t = now
      else
        local add = math.floor(dt * rate / 1000000)
        if add > 0 then
          level = level + add
          t = t + math.ceil(add * 1000000 / rate)
        end
      end
    end
  elseif now > t then
    t = now
  end
  if level > burst then level = burst end
  redis.call('HSET', K.bucket, 'level', level, 't', t)
  return level
end

local function allowance(level)
  local held = tonumber(redis.call('HGET', K.bucket, 'held') or '0')
  local a = level - held
  if a < 0 then a = 0 end
  return a
end

-- The caller's model list: ARGV[i] = count, then (name, slots) pairs, slots -1 = unlimited.
local function read_models(args, i)
  local n = int_arg(args[i], 'models')
  local models, slots = {}, {}
  for k = 1, n do
    local name = args[i + 2 * k - 1]
    if name == nil or name == '' then error({err = 'INVALID models: missing name'}) end
    models[k] = name
    slots[name] = int_arg(args[i + 2 * k], 'slots')
  end
  return models, slots, i + 2 * n + 1
end

-- Slots neither in use nor held (0 while guarded) of each of `models`, all with a slot limit
-- (`slots`: model -> its limit), in one read of each hash; a list in the order of `models`.
local function free_slots_of(models, slots, is_guarded)
  local free = {}
  if #models == 0 then return free end
  if is_guarded then
    for k = 1, #models do free[k] = 0 end
    return free
  end
  local used = redis.call('HMGET', K.used, unpack(models))
  local held = redis.call('HMGET', K.held, unpack(models))
  for k, m in ipairs(models) do
    local f = slots[m] - tonumber(used[k] or '0') - tonumber(held[k] or '0')
    free[k] = f < 0 and 0 or f
  end
  return free
end

-- The free slots of one model whose limit is `slots`.
local function free_slots(model, slots, is_guarded)
  return free_slots_of({model}, {[model] = slots}, is_guarded)[1]
end

-- Common prologue: bind keys, clock, incarnation and rollback check, reap, refill.
-- Layout of every function's ARGV: inc, seen, lease_us, rate, burst, max_gone, then its own.
local function begin(keys, args)
  bind(keys)
  local now = now_us()
  check(args, now)
  local max_gone = int_arg(args[6], 'max_gone')
  reap(now, max_gone)
  local rate = tonumber(args[4])
  if rate == nil or rate < 0 then error({err = 'INVALID rate: must be a number >= 0'}) end
  local burst = int_arg(args[5], 'burst')
  local level = refill(now, rate, burst)
  return now, rate, burst, level
end

-- Appends to `out` whether the domain is guarded, the spend allowance (-1 = unpaced) and the free
-- slots of each of `models` (-1 = no limit; as free_slots_of).
local function snapshot_reply(out, now, rate, level, models, slots)
  local g = guarded(now)
  out[#out + 1] = g and 1 or 0
  out[#out + 1] = rate > 0 and allowance(level) or -1
  local limited = {}
  for _, m in ipairs(models) do
    if slots[m] >= 0 then limited[#limited + 1] = m end
  end
  local free = free_slots_of(limited, slots, g)
  local j = 0
  for _, m in ipairs(models) do
    if slots[m] < 0 then
      out[#out + 1] = -1
    else
      j = j + 1
      out[#out + 1] = free[j]
    end
  end
  return out
end

-- Creates the domain's state if missing. ARGV: new incarnation, incarnation the caller knew ("" =
-- none), lease_us, burst. A caller that knew another incarnation starts (or puts) the domain in its
-- conservative period: no free slot and an empty bucket until leases issued before the loss have
-- expired. Returns {inc, seq, guard}.
local function init(keys, args)
  bind(keys)
  local now = now_us()
  local new_inc, known = args[1], args[2]
  local lease_us = int_arg(args[3], 'lease_us')
  local burst = int_arg(args[4], 'burst')
  if new_inc == nil or new_inc == '' then error({err = 'INVALID incarnation: empty'}) end
  local inc = redis.call('HGET', K.meta, 'inc')
  local lost = known ~= '' and known ~= inc
  if not inc then
    inc = new_inc
    redis.call('HSET', K.meta, 'inc', inc, 'layout', LAYOUT, 'seq', 1, 'guard', 0, 'ncommit', 0,
               'nhold', 0, 'open', 0, 'gone', 0, 'expired', 0, 'rollbacks', 0, 'reserved', 0,
               'recorded', 0, 'created', now)
    redis.call('HSET', K.bucket, 'level', lost and 0 or burst, 't', now, 'held', 0)
  end
  if lost then
    local guard = tonumber(redis.call('HGET', K.meta, 'guard') or '0')
    if now + lease_us > guard then redis.call('HSET', K.meta, 'guard', now + lease_us) end
    local level = tonumber(redis.call('HGET', K.bucket, 'level') or '0')
    if level > 0 then redis.call('HSET', K.bucket, 'level', 0) end
    incr(K.meta, 'losses', 1)
  end
  local seq = bump()
  return {inc, seq, tonumber(redis.call('HGET', K.meta, 'guard'))}
end

-- ARGV[7..]: models. Returns {seq, guarded, allowance, free per model}.
local function snapshot(keys, args)
  local now, rate, _, level = begin(keys, args)
  local models, slots = read_models(args, 7)
  return snapshot_reply({bump()}, now, rate, level, models, slots)
end

-- ARGV[7] hold_for_us, [8] spend wanted (micro-USD, -1 = as much as allowed), [9..] models, then
-- the count of wanted (model, count) pairs and the pairs. Returns {seq, number, expiry, spend
-- granted (-1 = unlimited), slots granted per wanted pair}.
local function hold(keys, args)
  local now, rate, _, level = begin(keys, args)
  local hold_for = int_arg(args[7], 'hold_for_us')
  local want_spend = int_arg(args[8], 'spend')
  if hold_for <= 0 then error({err = 'INVALID hold_for: must be > 0'}) end
  local models, slots, i = read_models(args, 9)
  local n = int_arg(args[i], 'wanted')
  local wanted = {}
  for k = 1, n do
    wanted[k] = {args[i + 2 * k - 1], int_arg(args[i + 2 * k], 'count')}
    if wanted[k][2] < 0 then error({err = 'INVALID slots[' .. (k - 1) .. '].count: must be >= 0'}) end
  end
  local g = guarded(now)
  local number = redis.call('HINCRBY', K.meta, 'nhold', 1)
  local expiry = now + hold_for
  local spend = -1
  local held_spend = 0
  if rate > 0 then
    local a = allowance(level)
    spend = (want_spend < 0 or want_spend > a) and a or want_spend
    held_spend = spend
  end
  local rec = {int_str(expiry), int_str(held_spend)}
  local out = {0, number, expiry, spend}
  for k = 1, n do
    local m, count = wanted[k][1], wanted[k][2]
    local s = slots[m]
    local granted = 0
    if s == nil then
      granted = 0
    elseif s < 0 then
      granted = count
    else
      local f = free_slots(m, s, g)
      granted = count < f and count or f
      if granted > 0 then
        redis.call('HINCRBY', K.held, m, granted)
        rec[#rec + 1] = m
        rec[#rec + 1] = granted
      end
    end
    out[#out + 1] = granted
  end
  if held_spend > 0 then incr(K.bucket, 'held', held_spend) end
  redis.call('HSET', K.holds, number, table.concat(rec, '|'))
  redis.call('ZADD', K.hexp, rec[1], number)
  out[1] = bump()
  return out
end

-- ARGV[7] hold number. Returns {seq}.
local function release(keys, args)
  begin(keys, args)
  local number = args[7]
  local rec = redis.call('HGET', K.holds, number)
  if rec then drop_hold(number, rec) end
  return {bump()}
end

-- rl3_commit's reservations (ARGV[i + 1..]: n (model, micro-USD, tag) triples, as replicas built
-- before rl3_commit_packed send them), packed as commit_with takes them.
local function read_triples(args, i, n, slots)
  local leases = {}
  for k = 1, n do
    local m = args[i + 3 * k - 2]
    local micros = int_arg(args[i + 3 * k - 1], 'micros')
    local tag = args[i + 3 * k]
    if m == nil or tag == nil then error({err = 'INVALID reservations: truncated'}) end
    local problem = lease_problem(tag, micros, 'reservations[' .. (k - 1) .. ']')
    if problem then error({err = 'INVALID ' .. problem}) end
    leases[k] = {m, micros, tag, (slots[m] or -1) >= 0}
  end
  local head, body = pack_leases(leases)
  return head .. body
end

-- rl3_commit_packed's reservations: ARGV[i + 1], one string.
local function read_packed(args, i)
  local packed = args[i + 1]
  if packed == nil then error({err = 'INVALID reservations: missing'}) end
  return packed
end

-- A malformed entry k (from 1) of packed reservations.
local function bad_entry(k, what)
  error({err = 'INVALID reservations[' .. (k - 1) .. ']: ' .. what})
end

-- The body of rl3_commit and rl3_commit_packed. ARGV[7] hold number ("" = none), [8] inline
-- window (0 = none), [9] window cap (micro-USD, -1 = none), [10..] models, then the count n of
-- reservations and the reservations, which `read(args, i, n, slots)` returns packed: the models
-- header of a commit's record ("<count>|", then "<length>|<name>" per model, each once), then n
-- entries as the record keeps them (ENTRY characters: the model's index in the header, micro-USD
-- at most MAX_MICROS, the tag, and 1 when the model has a slot limit, else 0), so that they are
-- written as they came. Returns {seq, window spend after (or -1), lease number per reservation,
-- then as snapshot after the commit: guarded, allowance, free per model}.
local function commit_with(keys, args, read)
  local now, rate, burst, level = begin(keys, args)
  local lease_us = int_arg(args[3], 'lease_us')
  local hold_number = args[7]
  local window = int_arg(args[8], 'window')
  local cap = int_arg(args[9], 'cap')
  local models, slots, i = read_models(args, 10)
  local n = int_arg(args[i], 'reservations')
  if n < 0 then error({err = 'INVALID reservations: count must be >= 0'}) end
  local packed = read(args, i, n, slots)
  local names, at = parse_models(packed, 1)
  if names == nil then error({err = 'INVALID reservations: malformed models header'}) end
  -- The slot-limit mark each model's entries must carry (an unknown model is refused below).
  local seen, mark = {}, {}
  for j, m in ipairs(names) do
    if m == '' or seen[m] then
      error({err = "INVALID reservations: model '" .. m .. "' empty or twice in the header"})
    end
    seen[m] = true
    if slots[m] ~= nil then mark[j] = slots[m] >= 0 and 49 or 48 end
  end
  if #packed - at + 1 ~= n * ENTRY then
    error({err = 'INVALID reservations: ' .. n .. ' entries of ' .. ENTRY ..
            ' characters expected after the header'})
  end
  -- Each entry's numbers are read as every later reader of the record reads them (`entry`: Lua's
  -- tonumber of the same characters), so what is checked here is what they will count. Replicas
  -- write digits; any other spelling Lua reads as a whole number in range reads the same later.
  -- The cost per entry is the point of this loop's shape: two substrings, two conversions.
  local count = {}
  local total = 0
  local sub, byte, to_number = string.sub, string.byte, tonumber
  for k = 1, n do
    local e = at + (k - 1) * ENTRY
    local m = to_number(sub(packed, e, e + 3))
    local micros = to_number(sub(packed, e + 4, e + 19))
    local f = byte(packed, e + 36)
    if m == nil or micros == nil then bad_entry(k, 'model index and micro-USD must be digits') end
    if names[m] == nil then bad_entry(k, 'model index ' .. m .. ' is not in the header') end
    if micros % 1 ~= 0 then bad_entry(k, 'micro-USD must be a whole number') end
    if micros < 0 or micros > MAX_MICROS then
      bad_entry(k, 'predicted_cost_usd: must be in [0, 1e9]')
    end
    if (f ~= 48 and f ~= 49) or (mark[m] ~= nil and f ~= mark[m]) then
      bad_entry(k, 'slot-limit mark must be 1 for a model with a slot limit, else 0')
    end
    count[m] = (count[m] or 0) + 1
    total = total + micros
  end
  -- The hold is given back whatever happens below: committed, refused or fenced.
  local granted = nil
  local granted_spend = 0
  if hold_number ~= '' then
    local rec = redis.call('HGET', K.holds, hold_number)
    if not rec then
      bump()
      error({err = 'FENCED hold ' .. hold_number .. ' expired or was used before this commit (fenced)'})
    end
    local f = split(rec)
    if tonumber(f[1]) <= now then
      drop_hold(hold_number, rec)
      bump()
      error({err = 'FENCED hold ' .. hold_number .. ' expired before this commit (fenced)'})
    end
    granted = hold_slots(f)
    granted_spend = tonumber(f[2])
    drop_hold(hold_number, rec)
    bump()
  end
  local g = guarded(now)
  local used, order = {}, {}
  for j, m in ipairs(names) do
    local s = slots[m]
    if count[j] ~= nil and s == nil then error({err = "NOTFOUND unknown model '" .. m .. "'"}) end
    if count[j] ~= nil and s >= 0 then
      if granted ~= nil and count[j] > (granted[m] or 0) then
        error({err = "INVALID model '" .. m .. "': " .. count[j] .. ' slots committed, the hold granted ' ..
                (granted[m] or 0)})
      end
      local f = free_slots(m, s, g)
      if count[j] > f then
        error({err = "NOFIT model '" .. m .. "': " .. count[j] .. ' slots wanted, ' .. f .. ' free'})
      end
      used[m] = count[j]
      order[#order + 1] = m
    end
  end
  if rate > 0 then
    -- One micro-USD per reservation of rounding: the caller rounds each cost up.
    if granted ~= nil and total > granted_spend + n then
      error({err = 'INVALID spend: ' .. total .. ' micro-USD committed, the hold granted ' .. granted_spend})
    end
    -- Spend a hold granted is the decision's, even if completions charged more than predicted
    -- meanwhile and took the bucket below what holds hold (as the local ledger).
    local a = allowance(level)
    if granted == nil and total > a + n then
      error({err = 'NOFIT spend: ' .. total .. ' micro-USD wanted, ' .. a .. ' available'})
    end
  end
  local spent = -1
  if window > 0 then
    local cur = tonumber(redis.call('HGET', K.win, 'n') or '0')
    local s = redis.call('HGET', K.win, 's' .. window)
    if s == false or s == nil or window > cur then
      error({err = 'NOFIT inline window w' .. window .. ' is closed (the current one is w' .. cur .. ')'})
    end
    spent = tonumber(s) + total
    if cap >= 0 and spent > cap + n then
      local left = cap - tonumber(s)
      if left < 0 then left = 0 end
      error({err = 'NOFIT inline window w' .. window .. ': ' .. total .. ' micro-USD wanted, ' .. left ..
              ' micro-USD left of its cap'})
    end
  end
  -- Everything is checked: write.
  local expiry = now + lease_us
  local out = {0, spent}
  if n > 0 then
    local head = string.sub(packed, 1, at - 1)
    local body = string.sub(packed, at)
    for k, number in ipairs(write_leases(head, body, n, int_str(expiry), used, order, total)) do
      out[k + 2] = number
    end
  end
  if total > 0 then
    incr(K.meta, 'reserved', total)
    if rate > 0 then
      level = level - total
      redis.call('HSET', K.bucket, 'level', level)
    end
  end
  if window > 0 then redis.call('HSET', K.win, 's' .. window, spent) end
  out[1] = bump()
  return snapshot_reply(out, now, rate, level, models, slots)
end

local function commit(keys, args)
  return commit_with(keys, args, read_triples)
end

local function commit_packed(keys, args)
  return commit_with(keys, args, read_packed)
end

-- Completes lease `number` whose tag is `tag` at `actual` micro-USD (-1 = as predicted), the
-- bucket at `level` after a refill at `now`. Returns its predicted and recorded micro-USD, 1 if the
-- lease was active else 0, and the bucket's level after; nil when the lease is unknown, already
-- completed or forgotten.
local function complete_lease(number, tag, actual, now, rate, burst, level, max_gone)
  local c = int_str(math.floor(number / PER_COMMIT))
  local k = number % PER_COMMIT
  local f = redis.call('HMGET', K.commits, 'r' .. c, 'd' .. c)
  local rec, d = f[1], f[2]
  if not rec or not d or k < 1 or k > #d or string.byte(d, k) ~= 48 then return nil end
  local expiry, models, at = parse_record(rec)
  local model, predicted, etag, tracked = entry(rec, models, at, k)
  if etag ~= tag then return nil end
  local active = 0
  if expiry > now then
    active = 1
    if tracked then redis.call('HINCRBY', K.used, model, -1) end
    incr(K.meta, 'reserved', -predicted)
    incr(K.meta, 'open', -1)
    d = string.sub(d, 1, k - 1) .. '1' .. string.sub(d, k + 1)
  else
    -- Overdue, maybe not yet expired by a bounded reap: expire its commit first (its estimate is
    -- charged); the actual cost then replaces the estimate.
    if redis.call('ZSCORE', K.cexp, c) then expire_commits({c}, now, max_gone, 1) end
    incr(K.meta, 'recorded', -predicted)
    if redis.call('HEXISTS', K.commits, 'd' .. c) == 1 then
      incr(K.meta, 'gone', -1)
      d = string.sub(d, 1, k - 1) .. '2' .. string.sub(d, k + 1)
    else
      d = nil -- forgotten at once (max_gone 0)
    end
  end
  if d then
    if string.find(d, '0', 1, true) then
      redis.call('HSET', K.commits, 'd' .. c, d)
    else
      -- Every lease of the commit is completed: nothing of it is left to expire or remember.
      redis.call('ZREM', active == 1 and K.cexp or K.gexp, c)
      redis.call('HDEL', K.commits, 'r' .. c, 'd' .. c)
    end
  end
  local recorded = actual >= 0 and actual or predicted
  incr(K.meta, 'recorded', recorded)
  if rate > 0 then
    level = level + predicted - recorded
    if level > burst then level = burst end
    redis.call('HSET', K.bucket, 'level', level)
  end
  return predicted, recorded, active, level
end

-- One Complete (what a replica sends for a group of one). ARGV[7] lease number, [8] tag, [9] actual
-- micro-USD (-1 = as predicted). Returns {seq, predicted, recorded, 1 if the lease was active else
-- 0}.
local function complete(keys, args)
  local now, rate, burst, level = begin(keys, args)
  local predicted, recorded, active =
    complete_lease(int_arg(args[7], 'lease'), args[8], int_arg(args[9], 'actual'), now, rate, burst,
                   level, int_arg(args[6], 'max_gone'))
  if predicted == nil then error({err = 'NOTFOUND lease'}) end
  return {bump(), predicted, recorded, active}
end

-- Several Completes in one call, in order, as complete's one at a time (a lease named twice is
-- completed once; the second is unknown). ARGV[7] their count n (1 to MAX_COMPLETES), then n
-- triples as complete's ARGV[7..9]. Returns {seq, then per lease: predicted, recorded, 1 if it was
-- active else 0; -1, -1, 0 for a lease unknown, already completed or forgotten}.
local function complete_many(keys, args)
  local now, rate, burst, level = begin(keys, args)
  local max_gone = int_arg(args[6], 'max_gone')
  local n = int_arg(args[7], 'completes')
  if n < 1 or n > MAX_COMPLETES then
    error({err = 'INVALID completes: must be in [1, ' .. MAX_COMPLETES .. ']'})
  end
  local items = {}
  for k = 1, n do
    local b = 7 + 3 * (k - 1)
    if args[b + 2] == nil or args[b + 3] == nil then error({err = 'INVALID completes: truncated'}) end
    items[k] = {int_arg(args[b + 1], 'lease'), args[b + 2], int_arg(args[b + 3], 'actual')}
  end
  local out = {0}
  for _, item in ipairs(items) do
    local predicted, recorded, active, after =
      complete_lease(item[1], item[2], item[3], now, rate, burst, level, max_gone)
    if predicted == nil then
      predicted, recorded, active = -1, -1, 0
    else
      level = after
    end
    out[#out + 1] = predicted
    out[#out + 1] = recorded
    out[#out + 1] = active
  end
  out[1] = bump()
  return out
end

-- Opens the next inline window when the current one (w: its fields) is full or past its duration,
-- or none is open; counts one arrival. Returns the arrival's {window, position, window arrivals,
-- time left us (-1 = none)}. `w` is updated; the caller writes it.
local function arrive_one(w, now, arrivals, dur)
  if w.n == 0 or w.seen >= w.cap_n or (w.dur >= 0 and now - w.opened >= w.dur) then
    w.n = w.n + 1
    w.opened, w.cap_n, w.dur, w.seen = now, arrivals, dur, 0
    redis.call('HSET', K.win, 's' .. w.n, 0)
    redis.call('HDEL', K.win, 's' .. (w.n - WINDOWS_KEPT))
  end
  local position = w.seen
  w.seen = w.seen + 1
  local left = -1
  if w.dur >= 0 then
    left = w.opened + w.dur - now
    if left < 0 then left = 0 end
  end
  return w.n, position, w.cap_n, left
end

local function read_window()
  local f = redis.call('HMGET', K.win, 'n', 'opened', 'arrivals', 'dur', 'seen')
  return {n = tonumber(f[1] or '0'), opened = tonumber(f[2] or '0'), cap_n = tonumber(f[3] or '0'),
          dur = tonumber(f[4] or '-1'), seen = tonumber(f[5] or '0')}
end

-- A step of inline decisions (ledger.h, StepInline): commits first, each on its own (a refused one
-- writes nothing), then arrivals, then what may be used. ARGV[7] window arrivals, [8] window
-- duration us (-1 = none), [9] arrivals, [10..] models, then the count of commits and (window,
-- cap micro-USD (-1 = none), model, micros, tag) 5-tuples. Returns {seq, guarded, allowance, free
-- per model, the count of commits, per commit ('OK', lease number, window spend after) or (kind,
-- message, 0), per arrival (window, position, window arrivals, time left us (-1 = none)), the count
-- of windows, then (window, spend) per window named by a commit or an arrival and remembered}.
local function step(keys, args)
  local now, rate, _, level = begin(keys, args)
  local lease_us = int_arg(args[3], 'lease_us')
  local win_arrivals = int_arg(args[7], 'window_arrivals')
  local win_dur = int_arg(args[8], 'window_duration')
  local arrivals = int_arg(args[9], 'arrivals')
  if arrivals < 0 or arrivals > MAX_STEP then
    error({err = 'INVALID arrivals: must be in [0, ' .. MAX_STEP .. ']'})
  end
  if arrivals > 0 and win_arrivals < 1 then
    error({err = 'INVALID inline.window_arrivals: must be >= 1'})
  end
  local models, slots, i = read_models(args, 10)
  local n = int_arg(args[i], 'commits')
  if n < 0 or n > MAX_STEP then error({err = 'INVALID commits: at most ' .. MAX_STEP}) end
  local res = {}
  for k = 1, n do
    local b = i + 5 * (k - 1)
    local window, cap = int_arg(args[b + 1], 'window'), int_arg(args[b + 2], 'cap')
    local m, micros, tag = args[b + 3], int_arg(args[b + 4], 'micros'), args[b + 5]
    if m == nil or tag == nil then error({err = 'INVALID commits: truncated'}) end
    res[k] = {window, cap, m, micros, tag}
  end
  local w = read_window()
  local g = guarded(now)
  local spend = {}  -- window number -> its spend, as read or updated in this step
  local function window_spend(number)
    if spend[number] == nil then
      local s = redis.call('HGET', K.win, 's' .. number)
      spend[number] = (s and number <= w.n) and tonumber(s) or false
    end
    return spend[number]
  end
  -- Nothing below writes until every commit is decided, so what is free and held is read once.
  local free = {}  -- model -> its free slots before this step's commits
  local taken = {}  -- model -> slots taken by this step's commits
  local held = nil  -- micro-USD the bucket holds for holds
  local out = {0}
  local results = {}
  local leases = {}  -- the commits that fit, to write
  local total = 0
  for k = 1, n do
    local window, cap, m, micros, tag = res[k][1], res[k][2], res[k][3], res[k][4], res[k][5]
    local s = slots[m]
    local kind, why
    local spent = window > 0 and window_spend(window) or false
    local problem = lease_problem(tag, micros, 'reservations[0]')
    if problem then
      kind, why = 'INVALID', problem
    elseif spent == false then
      kind, why = 'NOFIT', 'inline window w' .. window .. ' is closed (the current one is w' .. w.n .. ')'
    elseif cap >= 0 and spent + micros > cap + 1 then
      local left = cap - spent
      if left < 0 then left = 0 end
      kind, why = 'NOFIT', 'inline window w' .. window .. ': ' .. micros .. ' micro-USD wanted, ' .. left ..
                    ' micro-USD left of its cap'
    elseif s == nil then
      kind, why = 'NOTFOUND', "unknown model '" .. m .. "'"
    else
      if s >= 0 then
        if free[m] == nil then free[m] = free_slots(m, s, g) end
        local f = free[m] - (taken[m] or 0)
        if f < 1 then
          kind, why = 'NOFIT', "model '" .. m .. "': 1 slots wanted, " .. (f < 0 and 0 or f) .. ' free'
        end
      end
      if kind == nil and rate > 0 then
        if held == nil then held = tonumber(redis.call('HGET', K.bucket, 'held') or '0') end
        local a = level - held
        if a < 0 then a = 0 end
        if micros > a + 1 then
          kind, why = 'NOFIT', 'spend: ' .. micros .. ' micro-USD wanted, ' .. a .. ' available'
        end
      end
    end
    if kind ~= nil then
      results[#results + 1] = kind
      results[#results + 1] = why
      results[#results + 1] = 0
    else
      local tracked = s >= 0
      if tracked then taken[m] = (taken[m] or 0) + 1 end
      leases[#leases + 1] = {m, micros, tag, tracked}
      total = total + micros
      if rate > 0 then level = level - micros end
      spend[window] = spent + micros
      results[#results + 1] = 'OK'
      results[#results + 1] = #leases -- its lease number once written
      results[#results + 1] = spent + micros
    end
  end
  -- Everything of the commits is decided: write it, one record for all.
  if #leases > 0 then
    local head, body, used, order = pack_leases(leases)
    local numbers = write_leases(head, body, #leases, int_str(now + lease_us), used, order, total)
    for r = 1, #results, 3 do
      if results[r] == 'OK' then results[r + 1] = numbers[results[r + 1]] end
    end
    if total > 0 then
      incr(K.meta, 'reserved', total)
      if rate > 0 then redis.call('HSET', K.bucket, 'level', level) end
    end
    for number_w, s in pairs(spend) do
      if s ~= false then redis.call('HSET', K.win, 's' .. number_w, s) end
    end
  end
  -- The arrivals.
  local arrived = {}
  for _ = 1, arrivals do
    local wn, position, cap_n, left = arrive_one(w, now, win_arrivals, win_dur)
    arrived[#arrived + 1] = wn
    arrived[#arrived + 1] = position
    arrived[#arrived + 1] = cap_n
    arrived[#arrived + 1] = left
    if window_spend(wn) == false then spend[wn] = 0 end  -- opened here
  end
  if arrivals > 0 then
    redis.call('HSET', K.win, 'n', w.n, 'opened', w.opened, 'arrivals', w.cap_n, 'dur', w.dur,
               'seen', w.seen)
  end
  snapshot_reply(out, now, rate, level, models, slots)
  out[#out + 1] = n
  for _, v in ipairs(results) do out[#out + 1] = v end
  for _, v in ipairs(arrived) do out[#out + 1] = v end
  -- The spend of every window named above that is still remembered (an arrival's window opened
  -- here spends 0; one forgotten meanwhile is left out).
  local windows = {}
  for number_w, s in pairs(spend) do
    if s ~= false and number_w > w.n - WINDOWS_KEPT then
      windows[#windows + 1] = number_w
      windows[#windows + 1] = s
    end
  end
  out[#out + 1] = #windows / 2
  for _, v in ipairs(windows) do out[#out + 1] = v end
  out[1] = bump()
  return out
end

-- A replica's escrow (redis_ledger.h, "Escrow"): a hold (in holds and hexp, so it expires like one)
-- whose spend the replica may use alone, and meta field e<number> = "reported|granted|expired":
-- the micro-USD the replica reported spent, the micro-USD the escrow was granted in all, and 1
-- once it expired. One call reports what the escrow spent so far (cumulative, so a call whose
-- outcome the replica did not learn can be followed by another), turning that much of its held
-- spend into a charge; extends it to `validity` from now; and tops its held spend and slots up to
-- their targets, from what is free. An escrow that expired had its held spend charged (as if spent:
-- its replica may have spent it); a later report gives back what it did not spend, and a new escrow
-- is drawn. ARGV[7] escrow number ("" = none), [8] the incarnation it was drawn from (another one:
-- none), [9] micro-USD spent so far, [10..] models, then validity us, the spend target (micro-USD),
-- the count of (model, slots target) pairs and the pairs. Returns {seq, number, expiry, spend held
-- (-1 = unlimited), spend granted in all, slots held per pair}.
local function escrow(keys, args)
  local now, rate, burst, level = begin(keys, args)
  local inc = redis.call('HGET', K.meta, 'inc')
  local number = args[8] == inc and args[7] or ''
  local spent = int_arg(args[9], 'spent')
  if spent < 0 then error({err = 'INVALID escrow spent: must be >= 0'}) end
  local models, slots, j = read_models(args, 10)
  local valid_us = int_arg(args[j], 'validity_us')
  local target = int_arg(args[j + 1], 'spend')
  local n = int_arg(args[j + 2], 'wanted')
  if valid_us <= 0 or target < 0 then error({err = 'INVALID escrow: validity and spend'}) end
  local wanted = {}
  for k = 1, n do
    wanted[k] = {args[j + 2 + 2 * k - 1], int_arg(args[j + 2 + 2 * k], 'count')}
    if wanted[k][1] == nil or wanted[k][2] < 0 then
      error({err = 'INVALID escrow slots[' .. (k - 1) .. ']: missing model or negative count'})
    end
  end
  local e = number ~= '' and redis.call('HGET', K.meta, 'e' .. number) or nil
  local held, granted, rec_slots = 0, 0, {}
  if e then
    local f = split(e)
    local reported, expired = tonumber(f[1]), f[3] == '1'
    granted = tonumber(f[2])
    local delta = spent - reported
    if delta < 0 then delta = 0 end
    incr(K.meta, 'recorded', delta)
    local rec = redis.call('HGET', K.holds, number)
    if rec and not expired then
      local h = split(rec)
      held = tonumber(h[2])
      rec_slots = hold_slots(h)
      -- What was spent leaves the hold for the bucket (beyond the hold: charged as well).
      local from_held = delta < held and delta or held
      held = held - from_held
      incr(K.bucket, 'held', -from_held)
      if rate > 0 then
        level = level - delta
        redis.call('HSET', K.bucket, 'level', level)
      end
      redis.call('HSET', K.meta, 'e' .. number,
                 int_str(math.max(reported, spent)) .. '|' .. int_str(granted) .. '|0')
    else
      -- Expired: all it held was charged then; give back what it did not spend.
      if expired and rate > 0 then
        level = level + granted - math.max(reported, spent)
        if level > burst then level = burst end
        redis.call('HSET', K.bucket, 'level', level)
      end
      redis.call('HDEL', K.meta, 'e' .. number)
      e = nil
    end
  end
  if not e then
    number = tostring(redis.call('HINCRBY', K.meta, 'nhold', 1))
    held, granted, rec_slots = 0, 0, {}
  end
  -- Top up to the targets, from what is free.
  local g = guarded(now)
  if rate > 0 and target > held then
    local a = allowance(level)
    local add = target - held
    if add > a then add = a end
    if add > 0 then
      held = held + add
      granted = granted + add
      incr(K.bucket, 'held', add)
    end
  end
  local expiry = now + valid_us
  local out = {0, number, expiry, rate > 0 and held or -1, granted}
  local rec = {int_str(expiry), int_str(held)}
  for k = 1, n do
    local m, want = wanted[k][1], wanted[k][2]
    local s = slots[m]
    local have = rec_slots[m] or 0
    if s ~= nil and s >= 0 and want > have then
      local add = free_slots(m, s, g)
      if add > want - have then add = want - have end
      if add > 0 then
        redis.call('HINCRBY', K.held, m, add)
        have = have + add
      end
    end
    rec_slots[m] = nil
    if have > 0 then
      rec[#rec + 1] = m
      rec[#rec + 1] = have
    end
    out[#out + 1] = have
  end
  -- Slots of models no longer wanted stay held until the escrow ends.
  for m, have in pairs(rec_slots) do
    rec[#rec + 1] = m
    rec[#rec + 1] = have
  end
  redis.call('HSET', K.holds, number, table.concat(rec, '|'))
  redis.call('ZADD', K.hexp, rec[1], number)
  local reported = 0
  if e then reported = math.max(tonumber(split(e)[1]), spent) end
  redis.call('HSET', K.meta, 'e' .. number, int_str(reported) .. '|' .. int_str(granted) .. '|0')
  out[1] = bump()
  return out
end

-- ARGV[7] model. Returns {seq, leases of the model}.
local function in_use(keys, args)
  begin(keys, args)
  return {bump(), tonumber(redis.call('HGET', K.used, args[7]) or '0')}
end

-- Returns {seq, reserved, recorded, paced (1/0), level, open leases, open holds, expired,
-- guarded}.
local function totals(keys, args)
  local now, rate, _, level = begin(keys, args)
  local m = redis.call('HMGET', K.meta, 'reserved', 'recorded', 'expired', 'open')
  return {bump(), tonumber(m[1] or '0'), tonumber(m[2] or '0'), rate > 0 and 1 or 0, level,
          tonumber(m[4] or '0'), redis.call('HLEN', K.holds), tonumber(m[3] or '0'),
          guarded(now) and 1 or 0}
end

-- Functions return their errors as error replies whose first word is the kind.
local function wrap(f)
  return function(keys, args)
    local ok, result = pcall(f, keys, args)
    if ok then return result end
    if type(result) == 'table' and result.err then return redis.error_reply(result.err) end
    return redis.error_reply('ERR ' .. tostring(result))
  end
end

redis.register_function('rl3_init', wrap(init))
redis.register_function('rl3_snapshot', wrap(snapshot))
redis.register_function('rl3_hold', wrap(hold))
redis.register_function('rl3_release', wrap(release))
redis.register_function('rl3_commit', wrap(commit))
redis.register_function('rl3_commit_packed', wrap(commit_packed))
redis.register_function('rl3_complete', wrap(complete))
redis.register_function('rl3_complete_many', wrap(complete_many))
redis.register_function('rl3_step', wrap(step))
redis.register_function('rl3_in_use', wrap(in_use))
redis.register_function('rl3_totals', wrap(totals))
redis.register_function('rl3_escrow', wrap(escrow))
