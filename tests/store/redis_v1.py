"""The Redis counters' script of the version before day hashes (commit 2b513a1), frozen:
a hash per key and minute, and from the `hours-from` marker on per key and hour. Tests run
it as the old version to check that an upgrade reads what it stored, with the arguments that
version built (`args`)."""

from __future__ import annotations

import json
from typing import Any

SCRIPT = """
local prefix, size, ttl, hour = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local calls = cjson.decode(ARGV[5])
local marker = prefix .. 'hours-from'
local marked, trusted, expiring = false, nil, {}
local function targets(key, bucket)
  local out = {{prefix .. key .. ':' .. bucket, ttl}}
  if hour > 0 then out[2] = {prefix .. key .. ':h' .. (bucket - bucket % hour), ttl + hour} end
  return out
end
local function apply(changes)
  for _, change in ipairs(changes) do
    local bucket, keys, deltas = change[1], change[2], change[3]
    if hour > 0 and #keys > 0 and not marked then
      redis.call('SET', marker, bucket, 'NX')
      marked = true
    end
    for _, key in ipairs(keys) do
      for _, target in ipairs(targets(key, bucket)) do
        for _, d in ipairs(deltas) do redis.call('HINCRBY', target[1], d[1], d[2]) end
        if not expiring[target[1]] then
          if redis.call('TTL', target[1]) < 0 then redis.call('EXPIRE', target[1], target[2]) end
          expiring[target[1]] = true
        end
      end
    end
  end
end
local function trusted_from()
  if hour > 0 and not trusted then
    local from = tonumber(redis.call('GET', marker))
    if from then trusted = from - from % hour + hour end
  end
  return trusted
end
local function read(current, queries)
  local fields, slot = {}, {}
  for _, q in ipairs(queries) do
    local key = q[1]
    if not fields[key] then fields[key], slot[key] = {}, {} end
    for _, f in ipairs(q[3]) do
      if not slot[key][f] then
        table.insert(fields[key], f)
        slot[key][f] = #fields[key]
      end
    end
  end
  local from, seen, out = trusted_from(), {}, {}
  for i, q in ipairs(queries) do
    local key, b, wanted, total = q[1], q[2], q[3], 0
    local function add(name, sign)
      local values = seen[name]
      if not values then
        values = redis.call('HMGET', name, unpack(fields[key]))
        seen[name] = values
      end
      for _, f in ipairs(wanted) do
        total = total + sign * (tonumber(values[slot[key][f]]) or 0)
      end
    end
    local function minutes(first, last, sign)
      for m = first, last, size do add(prefix .. key .. ':' .. m, sign) end
    end
    while b <= current do
      local h = hour > 0 and b - b % hour or nil
      if from and h >= from then
        -- The window's minutes b..last of hour h: read them, or read the hour's total less
        -- its other minutes, whichever takes fewer reads (the minutes before b must not
        -- have expired; those after `current` are in the future, mostly none).
        local final = h + hour - size
        local last = math.min(final, current)
        local before, after = (b - h) / size, (final - last) / size
        local alive = before == 0 or h + ttl > current + size
        if alive and 1 + before + after < (last - b) / size + 1 then
          add(prefix .. key .. ':h' .. h, 1)
          minutes(h, b - size, -1)
          minutes(last + size, final, -1)
        else
          minutes(b, last, 1)
        end
        b = last + size
      else
        add(prefix .. key .. ':' .. b, 1)
        b = b + size
      end
    end
    out[i] = string.format('%.0f', total)
  end
  return table.concat(out, ',')
end
local results = {}
for i, call in ipairs(calls) do
  apply(call[1])
  results[i] = #call[3] > 0 and read(call[2], call[3]) or ''
end
return table.concat(results, '|')
"""


def args(counters: Any, calls: list[list[Any]]) -> list[str | int]:
    """The old version's arguments for `calls`: the calls as JSON, each read's fields as a
    list."""
    old = [
        [changes, current, [[k, b, fields.split(",")] for k, b, fields in wanted]]
        for changes, _version, current, wanted in calls
    ]
    payload = json.dumps(old, separators=(",", ":"))
    return [counters.prefix, counters.clock.size, counters.ttl, counters.hour, payload]
