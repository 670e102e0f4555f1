"""The Redis quota backend (``AFS_QUOTA_REDIS_URL``): for many API processes at high request rates.

Each operation is one Lua script, which Redis runs atomically: ``charge`` checks every counter, then
increments them all or none; ``spend`` refills the bucket and takes tokens. One round trip per
operation, no locks held across the network. A counter is a hash (``u`` used, ``r`` reset time) that
restarts when ``r`` has passed, with a TTL so finished periods disappear. Times come from the caller
(the API processes' clocks), never from Redis, so the engine's clock stays the only clock. Counters
survive API restarts; they survive a Redis restart only if Redis persists (AOF or RDB).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from afs.quotas.store import Charged, Level, Take

GRACE_S = 3600  # keys outlive their period by this much, then Redis drops them

CHARGE = """
-- ARGV: now, grace seconds, then per key: amount, limit, reset time for a new period
local now, n = tonumber(ARGV[1]), #KEYS
local used, resets = {}, {}
for i = 1, n do
  local u, r = unpack(redis.call('HMGET', KEYS[i], 'u', 'r'))
  if r == false or tonumber(r) <= now then u, r = 0, ARGV[3 * i + 2] end
  used[i], resets[i] = tonumber(u), r
end
local refused = 0
for i = 1, n do
  if used[i] + tonumber(ARGV[3 * i]) > tonumber(ARGV[3 * i + 1]) then refused = i break end
end
local out = {refused}
for i = 1, n do
  if refused == 0 then
    used[i] = used[i] + tonumber(ARGV[3 * i])
    redis.call('HSET', KEYS[i], 'u', used[i], 'r', resets[i])
    redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(resets[i]) - now) + tonumber(ARGV[2]))
  end
  out[#out + 1] = used[i]
  out[#out + 1] = resets[i]
end
return out
"""

SPEND = """
local now, amount, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t, at = unpack(redis.call('HMGET', KEYS[1], 't', 'at'))
local tokens, last = tonumber(t), tonumber(at)
if tokens == nil then tokens, last = burst, now end
if now > last then tokens, last = math.min(burst, tokens + (now - last) * rate), now end
local granted = 0
if amount <= tokens then tokens, granted = tokens - amount, 1 end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'at', string.format('%.17g', last))
  redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
end
return {granted, string.format('%.17g', tokens)}
"""


class RedisQuotaStore:
    def __init__(self, url: str, prefix: str = "afs:quota:") -> None:
        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self._charge = self.client.register_script(CHARGE)
        self._spend = self.client.register_script(SPEND)

    def _key(self, user_id: int, kind: str, period: str = "") -> str:
        return f"{self.prefix}{user_id}:{kind}:{period}"

    def charge(self, user_id: int, takes: Sequence[Take], now: float) -> Charged:
        args: list[str | int | float] = [repr(now), GRACE_S]
        for take in takes:
            args += [take.amount, take.limit, repr(take.reset_at)]
        out = self._charge(keys=[self._key(user_id, t.kind, t.period) for t in takes], args=args)
        levels = [Level(int(out[i]), float(out[i + 1])) for i in range(1, len(out), 2)]
        return Charged(levels, None if out[0] == 0 else int(out[0]) - 1)

    def spend(self, user_id: int, amount: float, rate: float, burst: float, now: float) -> tuple[bool, float]:
        granted, tokens = self._spend(keys=[self._key(user_id, "bucket")],
                                      args=[repr(now), repr(amount), repr(rate), repr(burst), "1"])
        return granted == 1, float(tokens)

    def level(self, user_id: int, kind: str, period: str, now: float) -> Level | None:
        used, reset = self.client.hmget(self._key(user_id, kind, period), ["u", "r"])
        if reset is None or float(reset) <= now:
            return None
        return Level(int(used), float(reset))

    def tokens(self, user_id: int, rate: float, burst: float, now: float) -> float:
        _, tokens = self._spend(keys=[self._key(user_id, "bucket")],
                                args=[repr(now), "0", repr(rate), repr(burst), "0"])
        return float(tokens)

    def prune(self, now: float) -> None:
        """Nothing to do: every key carries a TTL."""

    def close(self) -> None:
        self.client.close()
