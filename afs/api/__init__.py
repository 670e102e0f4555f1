"""The scientists' HTTP API (FastAPI): accounts, filters and versions, dry runs, backtests, subscriptions."""
