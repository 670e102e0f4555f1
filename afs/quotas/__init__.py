"""Per-user fetch quotas: full alerts per visit and per day, cutout bytes and PPDB queries per day,
requests per second with a burst.

Mechanism: every check is one atomic conditional operation on shared state, so several API
processes enforce one quota together and never over-grant: a conditional upsert in the control-plane
database by default (``sql``; SQLite or PostgreSQL, persisted with the control plane), or a Lua
script in Redis (``redis_store``; ``AFS_QUOTA_REDIS_URL``) when many processes or high rates make
database writes per request too dear. ``engine`` turns limits (``limits``) and the store's answers
into decisions; ``afs.api.quota_deps`` turns decisions into HTTP 429s and RateLimit headers;
``ledger`` keeps the per-day usage report; ``bench`` measures it all.
"""

from afs.quotas.engine import Charge, Decision, QuotaEngine, tightest

__all__ = ["Charge", "Decision", "QuotaEngine", "tightest"]
