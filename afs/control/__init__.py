"""The control plane: users and tokens, filters and their versions, stats, caps and jobs.

SQLAlchemy 2 models and plain functions over a Session; the API and the stream worker both use
them, so a rule (who may see what, the activation gate, the per-visit cap) lives in one place.
"""
