"""The isolation boundary for user-written filters.

The service uses only what is exported here:

    info = compile_filter(source)               # FilterInfo, or raises FilterRejected
    with SandboxPool(SandboxLimits()) as pool:
        rejected = pool.set_filters([FilterSpec(id, owner, source), ...])
        result = pool.run_batch(alerts)         # BatchResult: outcomes by filter id
        result = pool.run_batch(alerts, supplements={id: per_alert_values}, query=answer)
                                                # alert["ppdb"] per filter; helpers.ppdb_query
        pool.info(filter_id)                    # FilterInfo of an active filter, as set_filters compiled it
        pool.enable(filter_id)                  # after a new version or an admin's decision
    outcome = result.outcomes[id]               # FilterOutcome
    cpu = merge_histograms(cpu, outcome.cpu_histogram)  # CPU per call, over batches
    p50_s, p99_s = histogram_quantile(cpu, 0.5), histogram_quantile(cpu, 0.99)
    MODULE_MEMBERS, helpers                     # what filters may import (the page and /v1/helpers list it)
    WHERE_RECORDS                               # the records a WHERE field may name (record.column)

This package imports nothing from the service (`afs`).
"""
from . import helpers
from .compiler import MODULE_MEMBERS, FilterInfo, compile_filter
from .cpu_histogram import CPU_HISTOGRAM_EDGES_S, histogram_quantile, merge_histograms
from .errors import FilterRejected, QueryRefused
from .limits import SandboxLimits
from .pool import FilterSpec, SandboxPool
from .results import BatchResult, FilterOutcome
from .where import RECORDS as WHERE_RECORDS

__all__ = [
    "CPU_HISTOGRAM_EDGES_S", "MODULE_MEMBERS", "WHERE_RECORDS", "BatchResult", "FilterInfo", "FilterOutcome", "FilterRejected",
    "FilterSpec", "QueryRefused", "SandboxLimits", "SandboxPool", "compile_filter", "histogram_quantile",
    "helpers", "merge_histograms",
]
