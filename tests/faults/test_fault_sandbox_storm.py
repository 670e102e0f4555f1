"""A storm of sandbox worker crashes from hostile filters (segfault, memory bomb, a C loop that ignores
signals), all in the one sandbox worker that also runs the predefined filters, under a real `afs worker`:
the stream does not stall (two visits go through), the benign filters match exactly what they match
without the hostile ones, and each hostile filter is disabled with the reason and the alert that did it,
in the worker's JSON log and its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from afs.alerts.simulate import simulate_visit
from afs.broker import EmbeddedBroker, free_port
from afs.processes import worker_process
from fault_helpers import (Reader, Seen, encode, expected_matches, filters_dir, log_has, produce, wait_for,
                           worker_settings)

pytestmark = pytest.mark.slow
N_ALERTS = 300
HOSTILE = {  # each crashes its sandbox worker on every alert whose diaSourceId has the remainder 0
    "crash_segfault": '''def filter(alert):
    if alert["diaSourceId"] % 3:
        return False
    nest = ()
    for i in range(400000):
        nest = (((nest,),),)
    return {nest: True}[nest]
''',
    "crash_memory": '''def filter(alert):
    if alert["diaSourceId"] % 4:
        return False
    return len(bytes(10 ** 10)) > 0
''',
    "crash_c_loop": '''def filter(alert):
    if alert["diaSourceId"] % 5:
        return False
    return sum(map(sum, [range(10 ** 7)] * 10 ** 4)) < 0
''',
}
MODULI = {"crash_segfault": 3, "crash_memory": 4, "crash_c_loop": 5}
MAX_KILLS = 6  # per filter before it is disabled: 18 sandbox worker deaths in all


def test_hostile_filters_crashing_the_sandbox_neither_stall_the_stream_nor_change_benign_results(
        tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedBroker(free_port()) as broker:
        settings = worker_settings(tmp_path, broker.bootstrap, filters_dir(tmp_path, HOSTILE), log_format="json",
                                   worker_metrics_port=port, sandbox_call_hard_timeout_s=0.5,
                                   # building the deep tuple can take 0.1 s on a busy machine: the soft limit
                                   # must not stop crash_segfault for time-outs before it crashes
                                   sandbox_call_soft_timeout_s=0.24,
                                   sandbox_max_kills=MAX_KILLS)
        visits = [simulate_visit(v, N_ALERTS, seed=2, cutouts=False) for v in (1, 2)]
        alerts = visits[0] + visits[1]
        benign = {p.stem for p in (settings.filters_dir).glob("*.py")} - set(HOSTILE)
        expected = expected_matches(settings, alerts, only=benign)
        seen, reader = Seen(settings), Reader(settings)
        log = tmp_path / "worker.log"
        try:
            with worker_process(settings, log) as worker:
                wait_for(lambda: log_has(log, "worker ready"), "the worker")
                for visit in visits:  # the second visit only once the first is through
                    produce(settings, encode(visit))
                    ids = {a["diaSourceId"] for a in visit}
                    seen.read(reader, lambda: set(seen.lightweight) >= ids, 300, worker, settle_s=0)
                seen.read(reader, lambda: all(seen.matches(fid) >= want for fid, want in expected.items()), 120,
                          worker, settle_s=2)
                metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            reader.close()

    assert set(seen.lightweight) == {a["diaSourceId"] for a in alerts}
    assert {fid: seen.matches(fid) for fid in expected} == expected
    assert sum(map(len, expected.values())) > 0, "no benign filter matched: the check would be vacuous"
    assert not any(seen.matches(fid) for fid in HOSTILE)

    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    disabled = {e["filter_id"]: e for e in entries if e["message"].startswith("filter ") and " disabled: " in
                e["message"]}
    assert set(disabled) == set(HOSTILE), disabled
    for fid, entry in disabled.items():  # the alert named is one the filter crashes on
        assert entry["diaSourceId"] % MODULI[fid] == 0, entry
    kills = {s.labels["filter_id"]: s.value for family in text_string_to_metric_families(metrics)
             for s in family.samples if s.name == "afs_filter_errors_total" and s.labels["kind"] == "kill"}
    assert all(kills[fid] == MAX_KILLS for fid in HOSTILE), kills
    assert not any(kills[fid] for fid in benign), kills
    print(f"\nkills charged per hostile filter: { {fid: kills[fid] for fid in HOSTILE} }; "
          f"disabled: { {fid: e['message'].split(' disabled: ')[1][:80] for fid, e in disabled.items()} }")
