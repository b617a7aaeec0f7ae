"""The counter model in Redis: one hash per counter key and day, fields per measure and
bucket, 10 minutes and hour (the layout: the comment above `_SCRIPT`).

Each call is part of one Lua script run, so applying an attempt's changes and reading its
windows is atomic: concurrent attempts on one key see distinct totals, on every worker and
host. Calls made while a script run is under way wait and go together in the next one, in
the order they were made (`_Pipe`): under load one round trip carries several attempts'
counts, reads and settles, and a lone call is sent at once. Needs a single Redis primary
(keys are built in Lua).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from app.store.counter_model import (
    READS,
    BucketClock,
    Capabilities,
    Changes,
    CounterDeltas,
    Reads,
    Totals,
)

# Short hash fields per column (the stored format: kept across versions).
_FIELDS = {
    "attempts": "a",
    "spend_micros": "s",
    "allowed": "al",
    "allowed_spend_micros": "as",
    "successes": "su",
    "pending": "p",
    "pending_spend_micros": "ps",
}
# A measure's column fields, as the script reads them (joined by ",").
_READ_FIELDS = {measure: ",".join(_FIELDS[c] for c in cols) for measure, cols in READS.items()}
# Where a column's deltas are written: under the field of its measure's first column. Reads
# only ever sum a measure's columns (counter_model.READS), so pending and allowed share one
# field and settling an allowed attempt (pending -1, allowed +1) writes nothing. Day hashes
# hold these fields only; the old layout's hashes may also hold "p" and "ps" (reads sum all).
_STORED = {column: _FIELDS[columns[0]] for columns in READS.values() for column in columns}

# One hash per counter key and UTC day (":d<day start>") holds the day's counts, a field per
# measure (see _STORED) and bucket ("a754": the bucket's index in the day), 10 minutes
# ("at75", where buckets tile them) and hour ("ah12"). A window's whole hours are read from
# their hour fields and the part of an hour it covers at either end from its buckets and
# 10-minute blocks, or as the hour's total less the blocks it does not cover, whichever takes
# fewer fields (buckets after the current one, from a host whose clock runs ahead, are not
# read). A window's fields are planned once a run (they are the same for every key), and a
# call's windows read one HMGET per day hash, for the fields the run has not read yet: ~4
# HMGETs for the starter policy's 10 windows, and fewer when a run's calls share keys (one
# per window and day hash took 12-15; a hash per minute and per hour 60-230, and the Lua
# around them made the Redis server's CPU the limit). A run's writes are summed per hash
# and field and written when it ends, with the hash's expiry.
#
# The layout before (kept readable for the upgrade): a hash per key and minute (":<bucket>")
# and, from the `hours-from` marker on, per key and hour (":h<hour start>"), trusted from
# the first whole hour after it (0: every hour). The `days-from` marker, set once (start, or
# a write that finds none: 0), says where day hashes begin: 0 where the prefix held no counts
# of the old layout, else the bucket it was set in. Hours before that bucket's hour are read
# in the old layout; its hour in both (an old process still running writes there, this one
# in day hashes), later ones in day hashes only. Buckets that do not tile an hour keep minute
# hashes only.
#
# ARGV: prefix, bucket size, ttl, hour (0: minute hashes only), the calls as one string of
# 8-byte integers (`_encode`), then the strings they name (number k: ARGV[5 + k]): counter
# keys, fields and field lists. A call is its changes' count, the policy version it counts
# under (-1: any), each change as its bucket, key count, keys, delta count and (field,
# delta) pairs, then its current bucket, read count and reads, each as its key, first
# bucket and fields joined by "," (the measure's column fields: day hashes read the first,
# the old layout all). Decoding JSON into tables was a third of the script's cost, and then
# splitting decimal tokens a third. Returns, per call, its totals joined by "," ("!": the
# policy is not at its version, nothing counted), and the calls joined by "|". The version
# is the live policy's as the `policy-version` key holds it (policy_version_key.py).
_SCRIPT = """
-- What a run plans and names that depends only on the bucket size and hour (the windows'
-- fields, the fields' names, the measures' column lists), kept from run to run where the
-- script is a Redis function (a library's locals live until it is loaded again); an EVAL
-- run starts with none. Plans are kept for the last few current buckets only.
local memos = {}
local CHUNK, unpacking = 64, nil
local function run(ARGV)
unpacking = unpacking or '<' .. string.rep('i8', CHUNK) -- (no string library at load)
local prefix, size, ttl, hour = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local memo = memos[ARGV[2] .. ' ' .. ARGV[4]]
if not memo then
  memo = {names = {}, shapes = {}, plans = 0, split = {}}
  memos[ARGV[2] .. ' ' .. ARGV[4]] = memo
end
-- The calls' numbers, 8 bytes each (little-endian), unpacked CHUNK at a time in C (the
-- stream is padded to a whole chunk): splitting a string of decimal tokens with gmatch and
-- tonumber on each was a third of the server's CPU per attempt.
local data, at, chunk, n = ARGV[5], 1, {}, CHUNK
local left = #data / 8
local function number()
  if n == CHUNK then
    chunk = {struct.unpack(unpacking, data, at)}
    at, n, left = chunk[CHUNK + 1], 0, left - CHUNK
  end
  n = n + 1
  return chunk[n]
end
local function more() return n < CHUNK or left > 0 end
local day = 86400
-- Numbers as text through %d: concatenating one (or passing it to redis.call) formats it as
-- a float ("%.14g", "%.17g"), several times the instructions; names, totals and deltas are
-- made by the hundred a run.
local fmt = string.format
local hours_marker, days_marker = prefix .. 'hours-from', prefix .. 'days-from'
local trusted, days, expiring = nil, nil, {}
-- The live policy's version (false: not kept), read once a run, where a call checks it.
local version = nil
local function live(expected)
  if expected < 0 then return true end
  if version == nil then
    version = tonumber(redis.call('GET', prefix .. 'policy-version')) or false
  end
  return expected == version
end
local function expire(name, seconds)
  if not expiring[name] then
    if redis.call('TTL', name) < 0 then redis.call('EXPIRE', name, seconds) end
    expiring[name] = true
  end
end
-- A day hash of a busy key holds hundreds of fields: in Redis's compact encoding (a listpack,
-- up to hash-max-listpack-entries) each field read or written scans them all. A value longer
-- than hash-max-listpack-value (64 by default) turns a hash into a hash table for good.
local wide = string.rep('-', 256)
local function widen(name)
  if not expiring[name] and redis.call('HLEN', name) > 64 then
    redis.call('HSETNX', name, '_', wide)
  end
  expire(name, ttl + day)
end
-- The levels a day hash counts at, finest first: the bucket, 10 minutes (where buckets tile
-- them) and the hour; a field is a column's field, the level's tag and the block's index in
-- the day ("a754", "at75", "ah12"). A suffix number s = level * 1e6 + index names one
-- (-1: the old layout's field itself); names are memoised, as formatting a number is most
-- of what building one costs.
local levels, tags = {size}, {''}
if hour > 0 then
  if size < 600 and 600 % size == 0 then levels[2], tags[2] = 600, 't' end
  levels[#levels + 1], tags[#tags + 1] = hour, 'h'
end
-- The table under `t[k]`, made on first use (the memos below are keyed twice).
local function inner(t, k)
  local by = t[k]
  if not by then
    by = {}
    t[k] = by
  end
  return by
end
local names = memo.names
local function field_name(f, s)
  local by = names[f]
  if not by then
    by = {[-1] = f}
    names[f] = by
  end
  local name = by[s]
  if not name then
    local k = math.floor(s / 1e6)
    name = f .. tags[k] .. fmt('%d', s - k * 1e6)
    by[s] = name
  end
  return name
end
-- A day hash's name (formatting the day's number is most of what building one costs).
local day_names = {}
local function day_name(key, d)
  local by = inner(day_names, key)
  local name = by[d]
  if not name then
    name = prefix .. key .. ':d' .. fmt('%d', d)
    by[d] = name
  end
  return name
end
local function days_from()
  if days == nil then days = tonumber(redis.call('GET', days_marker)) or false end
  return days
end
-- Day hashes are read and written through the run's copy of the fields it touched: a field
-- is read at most once a run (`values`: the stored value plus this run's deltas), and each
-- hash's deltas are summed and written once, when the run ends (`flush`), so calls on a busy
-- key share its reads and writes. Nothing else writes day hashes during a run.
-- A window's terms in one day hash are summed once a run (`sums`: {total, sign by field}
-- per hash and field list) and kept up to date as deltas are added.
local values, pending, written, sums, summed = {}, {}, {}, {}, {}
-- Adds deltas[i] to field fields[i] of hash `name`, i = 1..nf (a change on one key).
local function add(name, fields, deltas, nf)
  local p = pending[name]
  if not p then
    p = {}
    pending[name] = p
    written[#written + 1] = name
  end
  local v, list = values[name], summed[name]
  for i = 1, nf do
    local f, delta = fields[i], deltas[i]
    p[f] = (p[f] or 0) + delta
    if v then
      local x = v[f]
      if x then v[f] = x + delta end
    end
    if list then
      for j = 1, #list do
        local s = list[j][2][f]
        if s then list[j][1] = list[j][1] + s * delta end
      end
    end
  end
end
-- `plan`: a window's fields in one day hash, their signs, and the sign by field.
local function sum_of(name, plan)
  local by = sums[name]
  if not by then
    by = {}
    sums[name] = by
    summed[name] = {}
  end
  local fields = plan[1]
  local found = by[fields]
  if not found then
    local v, signs, total = values[name], plan[2], 0
    for j = 1, #fields do total = total + signs[j] * v[fields[j]] end
    found = {total, plan[3]}
    by[fields] = found
    local list = summed[name]
    list[#list + 1] = found
  end
  return found[1]
end
-- The fields of hash `name` that `want` marks (false in `values`: asked for, not read yet),
-- noting the hash in `missing` on its first; `load` reads them all in one HMGET. A hash
-- that does not exist when a run first reads it (`fresh`: a number's or a range's first
-- attempt of the day, most of them) holds this run's deltas only, as nothing else writes
-- day hashes during a run: its fields are known without reading them, and `flush` makes
-- it in one HSET.
local fresh = {}
local function want(name, fields, missing)
  local v = values[name]
  if not v then
    v = {}
    values[name] = v
    if redis.call('EXISTS', name) == 0 then fresh[name] = true end
  end
  if fresh[name] then
    local p = pending[name]
    for j = 1, #fields do
      local f = fields[j]
      if v[f] == nil then v[f] = p and p[f] or 0 end
    end
    return
  end
  local list = missing[name]
  for j = 1, #fields do
    local f = fields[j]
    if v[f] == nil then
      v[f] = false
      if not list then
        list = {}
        missing[name] = list
        missing[#missing + 1] = name
      end
      list[#list + 1] = f
    end
  end
end
local function load(name, fields)
  local v, got, p = values[name], redis.call('HMGET', name, unpack(fields)), pending[name]
  if p then
    for i = 1, #fields do
      local f = fields[i]
      v[f] = (tonumber(got[i]) or 0) + (p[f] or 0)
    end
  else
    for i = 1, #fields do v[fields[i]] = tonumber(got[i]) or 0 end
  end
end
-- A fresh hash made by one HSET of the run's deltas, its expiry set (no TTL: it had none).
local function create(name)
  local args = {}
  for f, delta in pairs(pending[name]) do
    if delta ~= 0 then
      args[#args + 1] = f
      args[#args + 1] = fmt('%d', delta)
    end
  end
  for i = 1, #args, 1000 do -- unpack's limit: Lua's C stack
    redis.call('HSET', name, unpack(args, i, math.min(i + 999, #args)))
  end
  if #args > 128 then
    widen(name)
  elseif #args > 0 then
    redis.call('EXPIRE', name, ttl + day)
    expiring[name] = true
  end
end
-- A hash none of whose fields came back as just its delta (each held a count already)
-- existed before this run and did not grow: the run that made it, or added its last field,
-- set its expiry and checked its size, so it takes no TTL or HLEN (a busy key's hashes).
-- (Measured: one HSET of the new values, with an HMGET of the fields the run did not read,
-- in place of an HINCRBY per field took 10 fewer commands per attempt but ~7 % more of the
-- server's instructions: the Lua around them costs more than the commands it saves.)
local function flush()
  for _, name in ipairs(written) do
    if fresh[name] then
      create(name)
    else
      local grew = false
      for f, delta in pairs(pending[name]) do
        if delta ~= 0 and redis.call('HINCRBY', name, f, fmt('%d', delta)) == delta then
          grew = true
        end
      end
      if grew then widen(name) end
    end
  end
end
-- One change: `nk` keys (keys[1..nk]) and `nd` deltas (ds[i] to field fs[i]), the call's
-- scratch tables (refilled for each change: no table is made per change or delta), as are
-- `fields` and `amounts` (its fields and deltas at every level).
local fields, amounts = {}, {}
local function apply(bucket, keys, nk, fs, ds, nd)
  if hour > 0 and nk > 0 and not days_from() then
    -- No marker after start(): evicted (an allkeys-* maxmemory policy). Day hashes hold
    -- every count but those of the old layout's last `ttl` (0); "from now" would hide the
    -- day hashes' counts before this hour from every window.
    redis.call('SET', days_marker, 0, 'NX')
    days = tonumber(redis.call('GET', days_marker))
  end
  if nk == 0 then -- nothing to count
  elseif hour == 0 or bucket < days - days % hour then
    -- The old layout: minute hashes only, or a count credited to a bucket before day hashes
    -- began (a late success): where the windows over that bucket read.
    for k = 1, nk do
      local key = keys[k]
      local name = prefix .. key .. ':' .. bucket
      for i = 1, nd do redis.call('HINCRBY', name, fs[i], ds[i]) end
      expire(name, ttl)
      if hour > 0 then
        name = prefix .. key .. ':h' .. (bucket - bucket % hour)
        for i = 1, nd do redis.call('HINCRBY', name, fs[i], ds[i]) end
        expire(name, ttl + hour)
      end
    end
  else
    local d, nf = bucket - bucket % day, 0
    for k, length in ipairs(levels) do
      local s = k * 1e6 + (bucket - bucket % length - d) / length
      for i = 1, nd do
        nf = nf + 1
        fields[nf], amounts[nf] = field_name(fs[i], s), ds[i]
      end
    end
    for k = 1, nk do add(day_name(keys[k], d), fields, amounts, nf) end
  end
end
local function trusted_from()
  if hour > 0 and trusted == nil then
    local from = tonumber(redis.call('GET', hours_marker))
    trusted = from and from - from % hour + hour or false
  end
  return trusted
end
-- The old layout's hashes a window's buckets b..last_b read: {hash, sign}.
local function legacy(key, b, last_b, current, out)
  local from = trusted_from()
  while b <= last_b do
    local h = hour > 0 and b - b % hour or nil
    if from and h >= from then
      local final = h + hour - size
      local last = math.min(final, last_b)
      local before, after = (b - h) / size, (final - last) / size
      local alive = before == 0 or h + ttl > current + size
      if alive and 1 + before + after < (last - b) / size + 1 then
        out[#out + 1] = {prefix .. key .. ':h' .. h, 1}
        for m = h, b - size, size do out[#out + 1] = {prefix .. key .. ':' .. m, -1} end
        for m = last + size, final, size do out[#out + 1] = {prefix .. key .. ':' .. m, -1} end
      else
        for m = b, last, size do out[#out + 1] = {prefix .. key .. ':' .. m, 1} end
      end
      b = last + size
    else
      out[#out + 1] = {prefix .. key .. ':' .. b, 1}
      b = b + size
    end
  end
end
-- Buckets lo..hi of one block of level k, as the sum of its smaller blocks (the partly
-- covered ones split further), or as the block's total less the blocks it does not cover,
-- whichever takes fewer fields: {suffix, sign} terms.
local function parts(lo, hi, k, sign, d, out)
  local length = levels[k]
  local start = lo - lo % length
  local final = start + length - size
  if k == 1 or (lo == start and hi == final) then
    out[#out + 1] = {k * 1e6 + (start - d) / length, sign}
    return
  end
  local sub = levels[k - 1]
  local function pieces(from, to, sgn, into)
    while from <= to do
      local e = math.min(from - from % sub + sub - size, to)
      parts(from, e, k - 1, sgn, d, into)
      from = e + size
    end
  end
  local summed, rest = {}, {{k * 1e6 + (start - d) / length, sign}}
  pieces(lo, hi, sign, summed)
  pieces(start, lo - size, -sign, rest)
  pieces(hi + size, final, -sign, rest)
  for _, t in ipairs(#rest < #summed and rest or summed) do out[#out + 1] = t end
end
-- The day hashes' fields that buckets lo..current sum, the same for every key: per day
-- {day, terms, fields by column list}; planned once a run.
local function shape_of(lo, current)
  local by = memo.shapes[current]
  if not by then
    if memo.plans >= 4 then memo.shapes, memo.plans = {}, 0 end
    by = {}
    memo.shapes[current], memo.plans = by, memo.plans + 1
  end
  local shape = by[lo]
  if shape then return shape end
  shape = {}
  local b, group = lo, nil
  while b <= current do
    local d = b - b % day
    if not group or group.day ~= d then
      group = {day = d, terms = {}, fields = {}}
      shape[#shape + 1] = group
    end
    local last = math.min(b - b % hour + hour - size, current)
    parts(b, last, #levels, 1, d, group.terms)
    b = last + size
  end
  by[lo] = shape
  return shape
end
local function expand(group, f)
  local found = group.fields[f]
  if not found then
    local fields, signs, by = {}, {}, {}
    for i, t in ipairs(group.terms) do
      fields[i], signs[i] = field_name(f, t[1]), t[2]
      by[fields[i]] = (by[fields[i]] or 0) + t[2]
    end
    found = {fields, signs, by}
    group.fields[f] = found
  end
  return found
end
-- A window's total: its buckets before day hashes began from the old layout (each hash
-- read once a call: `old`, made on first use), the rest from its day hashes, whose terms
-- (hash, plan) go to the call's scratch lists `tnames`, `tplans` (no table made per window
-- or term) to be read together with the call's other windows'.
local tnames, tplans, tends, partial, out, old = {}, {}, {}, {}, {}, nil
local function total(key, b, columns, current, nt)
  local sum, from = 0, hour > 0 and days_from() or false
  local start = from and from - from % hour or nil
  if not from or b < start + hour then
    local hashes = {}
    old = old or {}
    legacy(key, b, from and math.min(current, start + hour - size) or current, current, hashes)
    for _, t in ipairs(hashes) do
      local hash = old[t[1]]
      if not hash then
        hash = {}
        local flat = redis.call('HGETALL', t[1])
        for i = 1, #flat, 2 do hash[flat[i]] = flat[i + 1] end
        old[t[1]] = hash
      end
      for _, f in ipairs(columns) do sum = sum + t[2] * (tonumber(hash[f]) or 0) end
    end
  end
  if from then
    local shape = shape_of(math.max(b, start), current)
    for g = 1, #shape do
      local group = shape[g]
      nt = nt + 1
      tnames[nt], tplans[nt] = day_name(key, group.day), expand(group, columns[1])
    end
  end
  return sum, nt
end
-- A call's windows: the fields each day hash holds for them read in one HMGET (none where
-- the run read them already).
local function read(current, n, keys, firsts, columns)
  local missing, nt = {}, 0
  old = nil
  for i = 1, n do
    local first = nt + 1
    partial[i], nt = total(keys[i], firsts[i], columns[i], current, nt)
    tends[i] = nt
    for k = first, nt do
      local name, fields = tnames[k], tplans[k][1]
      local by = sums[name]
      if not (by and by[fields]) then want(name, fields, missing) end
    end
  end
  for k = 1, #missing do load(missing[k], missing[missing[k]]) end
  local k = 1
  for i = 1, n do
    local sum = partial[i]
    while k <= tends[i] do
      sum = sum + sum_of(tnames[k], tplans[k])
      k = k + 1
    end
    out[i] = fmt('%d', sum)
  end
  return table.concat(out, ',', 1, n)
end
local split = memo.split
local function columns_of(fields)
  local found = split[fields]
  if not found then
    found = {}
    for f in string.gmatch(fields, '[^,]+') do found[#found + 1] = f end
    split[fields] = found
  end
  return found
end
local results, keys, firsts, columns, names, fs, ds = {}, {}, {}, {}, {}, {}, {}
while more() do
  local changes = number()
  if changes < 0 then break end -- the padding
  local counted = live(number())
  for _ = 1, changes do
    local bucket = number()
    local nk = number()
    for k = 1, nk do names[k] = ARGV[5 + number()] end
    local nd = number()
    for i = 1, nd do
      fs[i] = ARGV[5 + number()]
      ds[i] = number()
    end
    if counted then apply(bucket, names, nk, fs, ds, nd) end
  end
  local current, n = number(), number()
  for q = 1, n do
    keys[q] = ARGV[5 + number()]
    firsts[q] = number()
    columns[q] = columns_of(ARGV[5 + number()])
  end
  if not counted then
    results[#results + 1] = '!'
  else
    results[#results + 1] = n > 0 and read(current, n, keys, firsts, columns) or ''
  end
end
flush()
return table.concat(results, '|')
end
"""

HOUR = 3600
CHUNK = 64  # numbers the script unpacks at a time (its CHUNK)
BATCH = 256  # calls per script run at most: as many as a PostgreSQL batch (intake/lanes.py)
ANY_VERSION = -1  # a call that counts whatever the policy's version
STALE = "!"  # a call's result where the policy was not at its version: nothing counted


class RedisCounters:
    """Counters shared by every worker and host through one Redis primary.

    `checks_version`: `observe` counts only if the policy is still at the version given, as
    the prefix's `policy-version` key holds it (kept by services/policy/published.py)."""

    def __init__(
        self,
        redis: Redis,
        *,
        bucket_seconds: int,
        retention_seconds: int,
        prefix: str = "vg:c:",
        checks_version: bool = False,
    ) -> None:
        self.redis = redis
        self.capabilities = Capabilities(checks_policy_version=checks_version)
        self.clock = BucketClock(bucket_seconds)
        self.ttl = retention_seconds + 2 * bucket_seconds
        self.prefix = prefix
        # Hour hashes only where minutes tile an hour exactly (any divisor of 3600 does).
        self.hour = HOUR if bucket_seconds < HOUR and HOUR % bucket_seconds == 0 else 0
        self.marker = f"{prefix}days-from"
        self._script = _Function(redis, _SCRIPT)
        self._args = _encode
        self._pipe = _Pipe(self._send)
        # A window's first bucket, as its distance from the current one (by window length).
        self._spans: dict[int, int] = {}

    async def start(self, now: datetime | None = None) -> None:
        """Set the marker, once for all workers and hosts: day hashes hold every count where
        the prefix holds none of the old layout's, else the counts from now on (see the
        script's comment). Day hashes alone (the marker evicted) are not an upgrade. Other
        versions' function libraries are deleted (`_Function.prune`)."""
        await self._script.prune()
        if not self.hour or await self.redis.exists(self.marker):
            return
        value = self.clock.bucket(now or datetime.now(UTC)) if await self._old_layout() else 0
        await self.redis.set(self.marker, value, nx=True)

    async def _old_layout(self) -> bool:
        """Whether a minute or hour hash of the layout before day hashes is still kept."""
        async for key in self.redis.scan_iter(match=f"{self.prefix}*:[0-9h]*", count=1000):
            last = key.decode().rsplit(":", 1)[-1]
            if last.removeprefix("h").isdigit():
                return True
        return False

    async def close(self) -> None:
        await self._pipe.drain()
        await self.redis.aclose()

    async def apply(self, conn: Any, changes: Changes) -> None:
        if stored := _changes(changes):
            await self._pipe.call([stored, ANY_VERSION, 0, []])

    async def observe(
        self, conn: Any, changes: Changes, reads: Reads, *, version: int | None = None
    ) -> Totals | None:
        assert version is None or self.capabilities.checks_policy_version
        checked = ANY_VERSION if version is None else version
        return await self._run(_changes(changes), reads, checked)

    async def read(self, conn: Any, reads: Reads) -> Totals:
        if not reads.queries:
            return {}
        totals = await self._run([], reads, ANY_VERSION)
        assert totals is not None  # no version to check
        return totals

    async def _run(self, changes: list[Any], reads: Reads, version: int) -> Totals | None:
        queries = reads.queries
        current = self.clock.bucket(reads.now)
        spans = self._spans
        wanted = []
        for q in queries:
            span = spans.get(q.window_seconds)
            if span is None:
                span = spans[q.window_seconds] = current - self.clock.oldest(
                    reads.now, q.window_seconds
                )
            wanted.append((q.key, current - span, _READ_FIELDS[q.measure]))
        raw = await self._pipe.call([changes, version, current, wanted])
        if raw == STALE:
            return None
        if not queries:
            return {}
        return dict(zip(queries, map(int, raw.split(",")), strict=True))

    async def _send(self, calls: list[list[Any]]) -> list[str]:
        """One script run for `calls`, in order; each one's totals, joined by ","."""
        raw = await self._script(args=self._args(self, calls))
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return text.split("|")


def _encode(counters: RedisCounters, calls: list[list[Any]]) -> list[str | int | bytes]:
    """The script's arguments for `calls` (see the comment above `_SCRIPT`): the calls as
    8-byte integers, padded with -1 to a whole chunk; each counter key, field and field list
    once, the numbers naming it by its place."""
    names: dict[str, int] = {}
    out: list[int] = []
    for changes, version, current, wanted in calls:
        out += (len(changes), version)
        for bucket, keys, deltas in changes:
            out += (bucket, len(keys))
            out += [names.setdefault(k, len(names) + 1) for k in keys]
            out.append(len(deltas))
            for field, delta in deltas:
                out += (names.setdefault(field, len(names) + 1), delta)
        out += (current, len(wanted))
        for key, first, fields in wanted:
            out += (names.setdefault(key, len(names) + 1), first)
            out.append(names.setdefault(fields, len(names) + 1))
    out += [-1] * (-len(out) % CHUNK)
    args: list[str | int | bytes] = [counters.prefix, counters.clock.size, counters.ttl]
    return [*args, counters.hour, struct.pack(f"<{len(out)}q", *out), *names]


def _changes(changes: Sequence[CounterDeltas]) -> list[Any]:
    """The changes as the script takes them: (bucket, keys, [(field, delta), ...]), those
    that write nothing left out (see _STORED)."""
    out: list[Any] = []
    for change in changes:
        if not change.keys:
            continue
        sums: dict[str, int] = {}
        for column, delta in change.deltas.items():
            field = _STORED[column]
            sums[field] = sums.get(field, 0) + delta
        deltas = [(field, delta) for field, delta in sums.items() if delta]
        if deltas:
            out.append((change.bucket, change.keys, deltas))
    return out


LIBRARY = "verifyguard_counters_"
LOADS = 3  # FUNCTION LOADs a run tries before it fails (_Function._fcall)


class _Function:
    """The script as a Redis function (`FCALL`): its library's memos (what a run plans and
    names) are kept from run to run, where an `EVALSHA` run makes them afresh. The library
    and function are named by the script's hash, so versions side by side each call their
    own; loaded on first use and again when Redis lost it (a restart, `FUNCTION DELETE`).
    Where Redis has no functions (before 7.0) or the user may not call or load them (ACL),
    runs go through `EVALSHA` (the same script, with no memos kept).

    A process deletes the other versions' libraries when it starts (`prune`), so they do not
    pile up in Redis deploy after deploy (functions are server-wide: every database's). In a
    rolling deploy a version still running then finds its library gone and loads it again
    at its next run (one FUNCTION LOAD per process; it prunes nothing then), so deleting a
    library in use costs a reload, never a failed run: a deploy leaves at most the last
    version before it, which the next one deletes."""

    def __init__(self, redis: Redis, body: str) -> None:
        self.redis = redis
        self.name = f"{LIBRARY}{hashlib.sha256(body.encode()).hexdigest()[:16]}"
        self.library = (
            f"#!lua name={self.name}\n{body}\n"
            f"redis.register_function('{self.name}', function(_, argv) return run(argv) end)\n"
        )
        self.script = redis.register_script(f"{body}\nreturn run(ARGV)\n")
        self.functions = True

    async def __call__(self, *, args: list[Any]) -> Any:
        if self.functions:
            try:
                return await self._fcall(args)
            except ResponseError as exc:  # FCALL or FUNCTION refused: the run did not start
                if not (isinstance(exc, NoPermissionError) or _no_functions(exc)):
                    raise  # an error inside the run (a command it calls refused, ...)
                self.functions = False
        return await self.script(args=args)

    async def _fcall(self, args: list[Any]) -> Any:
        for _ in range(LOADS):
            try:
                return await self.redis.fcall(self.name, 0, *args)
            except ResponseError as exc:
                if "Function not found" not in str(exc):
                    raise
            try:  # deleted again before the run (another version started): loaded again
                await self.redis.function_load(self.library)
            except ResponseError as exc:
                if "already exists" not in str(exc):  # loaded meanwhile by another worker
                    raise
        return await self.redis.fcall(self.name, 0, *args)

    async def prune(self) -> None:
        """Delete the libraries of the counters' other versions (see the class docstring);
        nothing where Redis has no functions or the user may not list or delete them."""
        try:
            listed = await self.redis.function_list(library=f"{LIBRARY}*")
        except ResponseError as exc:
            if isinstance(exc, NoPermissionError) or _no_functions(exc):
                return
            raise
        for library in listed:
            fields = dict(zip(library[::2], library[1::2], strict=True))
            name = fields[b"library_name"].decode()
            if name == self.name or not name.startswith(LIBRARY):
                continue
            try:
                await self.redis.function_delete(name)
            except ResponseError as exc:
                if isinstance(exc, NoPermissionError):
                    return
                if "not found" not in str(exc).lower():  # deleted meanwhile by another one
                    raise


def _no_functions(exc: ResponseError) -> bool:
    """Whether Redis has no FCALL or FUNCTION command (before 7.0)."""
    text = str(exc).lower()
    return "unknown command" in text and ("fcall" in text or "function" in text)


class _Pipe:
    """Calls made while a script run is under way wait for it, then go in one run together,
    in the order they were made: batches grow with the load, and a lone call is sent at
    once. A run that fails fails each of its calls (Redis keeps a script's commands up to
    the failing one: day-hash writes are made when a run ends, so a run failing before
    then writes none of them; the old layout's writes, made as its calls go, may be kept
    in part)."""

    def __init__(self, send: Any, limit: int = BATCH) -> None:
        self._send = send
        self._limit = limit
        self._queue: list[tuple[list[Any], asyncio.Future[str]]] = []
        self._task: asyncio.Task[None] | None = None

    async def call(self, call: list[Any]) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.append((call, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write(), name="verifyguard-redis-counters")
        return await future

    async def drain(self) -> None:
        """Wait until every call made so far has been sent and answered."""
        loop = asyncio.get_running_loop()
        while self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
            try:
                results = await self._send([call for call, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                for _, future in batch + self._queue:  # cancelled: no caller is left waiting
                    future.cancel()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
