"""Benchmark: the sandboxed path against plain Python on the same filters.

    python -m sandbox.bench [--alerts 10000] [--history 10]

Over one batch of alerts, with 1, 10 and 100 filters, in one run:
  plain       the filters compiled normally, run in this process on frozen alerts
  restricted  the same filters compiled by sandbox.compiler, with the guards, in
              this process (the language's cost alone)
  sandboxed   SandboxPool.run_batch with its worker processes (everything: pickling,
              pipes, freezing, guards, watchdog), wall time and the workers' CPU,
              and the CPU per call (p50/p99 over all filters, from cpu_histogram)
and the per-alert costs paid once per alert: freezing, pickling, and a whole
sandboxed batch with one trivial filter. The alerts come from
afs.alerts.simulate when the service is installed alongside (a dev-time
convenience: the sandbox itself never imports afs), else sandbox.sample_alerts.
"""
from __future__ import annotations

import argparse
import builtins
import functools
import marshal
import pickle
import sys
import time
from collections.abc import Callable
from typing import Any

from . import helpers
from .compiler import compile_source
from .cpu_histogram import histogram_quantile, merge_histograms
from .freeze import freeze_top, project
from .limits import SandboxLimits
from .pool import FilterSpec, SandboxPool
from .runtime import filter_globals
from .sample_alerts import sample_alerts

# Ten kinds of filter a scientist might write; each is instantiated with ten
# thresholds, so 100 filters are 100 different sources.
TEMPLATES = [
    ('("diaSource",)', "from helpers import flux_to_mag\n",
     'return flux_to_mag(alert["diaSource"]["psfFlux"]) < 21.0 + {k} * 0.2'),
    ('("diaSource",)', "from helpers import snr\n",
     's = alert["diaSource"]\n    return snr(s["psfFlux"], s["psfFluxErr"]) > 5 + {k}'),
    ('("diaSource", "prvDiaSources")', "import math\nfrom helpers import rise_rate\n",
     'rate = rise_rate(alert, days=30)\n    return not math.isnan(rate) and rate < -0.01 * {k}'),
    ('("diaSource",)', "from helpers import galactic_latitude\n",
     's = alert["diaSource"]\n    return abs(galactic_latitude(s["ra"], s["dec"])) > 10 + {k}'),
    ('("diaObject",)', "",
     'o = alert["diaObject"]\n    return o is not None and (o["nDiaSources"] or 0) <= 1 + {k}'),
    ('("diaSource", "prvDiaSources")', "from helpers import light_curve, stdev, mean\n",
     'fluxes = [p["flux"] for p in light_curve(alert)]\n'
     '    spread = stdev(fluxes)\n    return spread == spread and spread > 0.1 * {k} * abs(mean(fluxes))'),
    ('("diaSource",)', "from helpers import flux_to_mag\n",
     's = alert["diaSource"]\n    return s["band"] in ("g", "r") and flux_to_mag(s["psfFlux"]) < 22 + 0.1 * {k}'),
    ('("diaSource", "prvDiaForcedSources")', "from helpers import light_curve\n",
     'return len(light_curve(alert, forced=True)) > {k}'),
    ('("diaSource",)', "import math\nfrom helpers import flux_to_mag\n",
     'mag = flux_to_mag(alert["diaSource"]["psfFlux"])\n'
     '    return 0.0 if math.isnan(mag) else max(0.0, 23.0 + 0.1 * {k} - mag)'),
    ('("prvDiaSources",)', "",
     'count = 0\n    for p in alert["prvDiaSources"] or ():\n'
     '        if p["psfFlux"] is not None and p["psfFlux"] > 1000 * {k}:\n'
     '            count += 1\n    return count >= 2'),
]


def filter_sources(n: int) -> list[str]:
    sources = []
    for i in range(n):
        reads, imports, body = TEMPLATES[i % len(TEMPLATES)]
        k = i // len(TEMPLATES)
        sources.append(f'"""Benchmark filter {i}."""\n{imports}READS = {reads}\n\n\n'
                       f"def filter(alert):\n    {body.format(k=k)}\n")
    return sources


def _alerts(n: int, history: int) -> tuple[list[dict[str, Any]], str]:
    try:
        from afs.alerts.simulate import simulate_visit
    except ImportError:
        return sample_alerts(n, history=history), f"sandbox.sample_alerts (history {history})"
    return simulate_visit(1, n, 1, cutouts=False), "afs.alerts.simulate.simulate_visit"


def _plain_import(name: str, *args: Any, **kwargs: Any) -> Any:
    return helpers if name == "helpers" else __import__(name, *args, **kwargs)


def _plain_function(source: str) -> Callable[[Any], Any]:
    """The filter as ordinary Python: real builtins, `helpers` is sandbox.helpers."""
    namespace: dict[str, Any] = {"__name__": "plain",
                                 "__builtins__": {**vars(builtins), "__import__": _plain_import}}
    exec(compile(source, "<plain>", "exec"), namespace)
    return namespace["filter"]


def _restricted_function(source: str) -> Callable[[Any], Any]:
    namespace = filter_globals("<filter>")
    exec(marshal.loads(compile_source(source).code), namespace)
    return namespace["filter"]


def _run_in_process(functions: list[Callable[[Any], Any]], reads: list[tuple[str, ...] | None],
                    tops: list[dict[str, Any]]) -> tuple[float, list[list[tuple[int, float]]]]:
    """Seconds to run every function over the alerts (views built outside the timing)."""
    views_by_reads = {r: [project(top, r) for top in tops] for r in set(reads)}
    helpers.reset_caches()
    results = []
    started = time.perf_counter()
    for function, r in zip(functions, reads):
        matches = []
        for index, alert in enumerate(views_by_reads[r]):
            value = function(alert)
            if value is not False and value > 0:
                matches.append((index, float(value)))
        results.append(matches)
    return time.perf_counter() - started, results


def _per_alert_costs(alerts: list[dict[str, Any]]) -> dict[str, float]:
    started = time.perf_counter()
    payload = pickle.dumps(alerts, pickle.HIGHEST_PROTOCOL)
    pickle_s = time.perf_counter() - started
    started = time.perf_counter()
    copies = pickle.loads(payload)
    unpickle_s = time.perf_counter() - started
    started = time.perf_counter()
    for alert in copies:
        freeze_top(alert)
    freeze_s = time.perf_counter() - started
    n = len(alerts)
    return {"freeze": freeze_s / n, "pickle": pickle_s / n, "unpickle": unpickle_s / n,
            "bytes": len(payload) / n}


def _sandboxed(pool: SandboxPool, sources: list[str], alerts: list[dict[str, Any]],
               ) -> tuple[float, float, dict[str, list[tuple[int, float]]], tuple[int, ...]]:
    """Wall and CPU seconds, matches by filter, and the CPU per call of every filter."""
    rejected = pool.set_filters([FilterSpec(f"f{i}", f"owner{i % 7}", s) for i, s in enumerate(sources)])
    if rejected:
        raise SystemExit(f"benchmark filters rejected: {rejected}")
    pool.run_batch(alerts[:100])  # load and warm up
    started = time.perf_counter()
    result = pool.run_batch(alerts)
    wall = time.perf_counter() - started
    cpu = sum(o.cpu_seconds for o in result.outcomes.values())
    per_call = functools.reduce(merge_histograms,
                                (o.cpu_histogram for o in result.outcomes.values()))
    return wall, cpu, {fid: o.matches for fid, o in result.outcomes.items()}, per_call


def _quantiles_us(histogram: tuple[int, ...]) -> str:
    """p50/p99 of CPU per call, as the upper edges of their bins."""
    return "/".join(f"{histogram_quantile(histogram, q) * 1e6:.3g}" for q in (0.5, 0.99))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=10, help="for sample alerts only")
    args = parser.parse_args(argv)

    alerts, origin = _alerts(args.alerts, args.history)
    n = len(alerts)
    print(f"{n} alerts from {origin}; Python {sys.version.split()[0]}")
    costs = _per_alert_costs(alerts)
    print(f"per alert, paid once per worker: freeze {costs['freeze'] * 1e3:.3f} ms, pickle "
          f"{costs['pickle'] * 1e3:.3f} ms, unpickle {costs['unpickle'] * 1e3:.3f} ms "
          f"({costs['bytes'] / 1e3:.1f} kB)")
    tops = [freeze_top(alert) for alert in pickle.loads(pickle.dumps(alerts))]  # private copies

    limits = SandboxLimits(batch_deadline_s=120.0, cpu_seconds=120.0)
    with SandboxPool(limits) as pool:
        for label, source in (("all keys", "def filter(alert):\n    return False\n"),
                              ("READS diaSource", 'READS = ("diaSource",)\n'
                                                  "def filter(alert):\n    return False\n")):
            wall, _, _, _ = _sandboxed(pool, [source], alerts)
            print(f"sandboxed batch, 1 trivial filter ({label}): {wall:.2f} s = "
                  f"{wall / n * 1e3:.3f} ms per alert (IPC + freezing + call)")
        print()
        print(f"{'filters':>7} {'plain s':>8} {'restr. s':>9} {'sandbox s':>10} {'sbx cpu s':>10}"
              f" {'restr/plain':>12} {'sbx/plain':>10} {'sbx cpu/plain':>14} {'us/alert/filter':>16}"
              f" {'call p50/p99 us':>16}")
        for count in (1, 10, 100):
            sources = filter_sources(count)
            reads = [compile_source(s).info.reads for s in sources]
            reads_keys = [None if r is None else tuple(sorted(r)) for r in reads]
            plain_s, plain_matches = _run_in_process([_plain_function(s) for s in sources],
                                                     reads_keys, tops)
            restricted_s, restricted_matches = _run_in_process(
                [_restricted_function(s) for s in sources], reads_keys, tops)
            wall, cpu, matches, per_call = _sandboxed(pool, sources, alerts)
            if restricted_matches != plain_matches or [matches[f"f{i}"] for i in range(count)] != plain_matches:
                raise SystemExit("sandboxed results differ from plain Python")
            print(f"{count:>7} {plain_s:>8.3f} {restricted_s:>9.3f} {wall:>10.3f} {cpu:>10.3f}"
                  f" {restricted_s / plain_s:>12.2f} {wall / plain_s:>10.2f} {cpu / plain_s:>14.2f}"
                  f" {wall / n / count * 1e6:>16.2f} {_quantiles_us(per_call):>16}")


if __name__ == "__main__":
    main()
