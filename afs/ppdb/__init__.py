"""The PPDB mirror: Rubin's Prompt Products Database tables in DuckDB, fed by the alert stream.

- ``schema``: the DDL, generated from the Felis YAML in lsst-sdm-schemas.
- ``mirror``: ``Mirror``, the one owner of the file: appends (alert batches, Parquet exports) and reads.
- ``service``: ``MirrorServer``/``MirrorClient``: every other process reaches the owner over Arrow Flight.
- ``queries``: user queries (history, cone, time window), paginated and row-capped.
- ``needs``/``prefetch``: what filters declare they need, fetched for a whole batch in one query.
- ``narrow``: the few per-alert queries a filter may run, under row, call and time limits.
- ``rows``, ``sky``, ``synthetic``, ``bench``, ``cli``: conversion, HEALPix, test data, benchmark, commands.
"""
