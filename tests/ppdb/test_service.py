"""The single-writer design: the owner serves other processes over Arrow Flight, and readers see whole
batches only, in-process or through the service, while the owner writes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from afs.config import Settings
from afs.ppdb.mirror import Mirror
from afs.ppdb.needs import validate_needs
from afs.ppdb.queries import QueryError
from afs.ppdb.schema import load
from afs.ppdb.service import MirrorClient, MirrorServer, Owner, pack, unpack
from afs.ppdb.synthetic import fill, sky_disc


@pytest.fixture
def served(mirror: Mirror) -> Iterator[tuple[Mirror, MirrorClient]]:
    socket = Path(tempfile.mkdtemp(prefix="ppdb")) / "s"  # short: Unix socket paths are limited to ~100 bytes
    server = MirrorServer(mirror, f"grpc+unix://{socket}")
    server.serve_in_thread()
    with MirrorClient(f"grpc+unix://{socket}") as client:
        yield mirror, client
    server.shutdown()


def batch(visit: int, n: int = 2000) -> dict:
    """One visit's DiaSources and the DiaObject version each makes: equal row counts in both tables."""
    rng = np.random.default_rng(visit)
    tables = load().tables
    ra, dec = sky_disc(rng, n, 40.0, -30.0, 1.0)
    ids = (np.int64(visit) << 20) + np.arange(n, dtype=np.int64)
    mjd = np.full(n, 61_000.0 + visit)
    return {"DiaSource": fill(tables["DiaSource"], n, rng, {"diaSourceId": ids, "diaObjectId": ids, "ra": ra,
                                                            "dec": dec, "midpointMjdTai": mjd}),
            "DiaObject": fill(tables["DiaObject"], n, rng, {"diaObjectId": ids, "validityStartMjdTai": mjd,
                                                            "ra": ra, "dec": dec})}


def test_the_wire_format_round_trips() -> None:
    tables = batch(1, 10)
    args, back = unpack(pack({"a": [1, "x"]}, tables))
    assert args == {"a": [1, "x"]} and all(back[k].equals(v) for k, v in tables.items())


def test_the_client_does_what_the_owner_does(served: tuple[Mirror, MirrorClient],
                                             visits: list[list[dict]]) -> None:
    mirror, client = served
    for alerts in visits[:-1]:
        client.ingest_alerts(alerts)
    again = client.ingest_alerts(visits[-2])
    assert sum(again.inserted.values()) == 0 and sum(again.known.values()) > 0
    source = visits[-2][0]["diaSource"]
    assert client.history(source["diaObjectId"]).table.equals(mirror.history(source["diaObjectId"]).table)
    near = client.cone(source["ra"], source["dec"], 30, table="DiaSource", limit=3)
    assert near.table.equals(mirror.cone(source["ra"], source["dec"], 30, table="DiaSource", limit=3).table)
    assert client.window(0, 1e6, limit=5).next_cursor == mirror.window(0, 1e6, limit=5).next_cursor
    needs = {"a": validate_needs({"history": {"days": 30}, "neighbours": {"radius_arcsec": 20}}),
             "b": validate_needs({"recent_detections": {"nights": 3}})}
    assert client.prefetch(needs, visits[-1]) == mirror.prefetch(needs, visits[-1])
    params = {"diaObjectId": source["diaObjectId"], "before_mjd": 1e6}
    assert client.narrow("history", params, 5, 1.0) == mirror.narrow("history", params, 5, 1.0)
    assert client.info() == mirror.info()


def test_errors_come_back_as_the_same_exceptions(served: tuple[Mirror, MirrorClient]) -> None:
    _, client = served
    with pytest.raises(QueryError, match="dia_object_id must be a 64-bit integer"):
        client.history("1 OR 1=1")
    with pytest.raises(QueryError, match="has no option"):
        client._page("history", [1], {"limits": None})
    with pytest.raises(ValueError, match="unknown operation"):
        client._call("drop_everything", {})
    with pytest.raises(QueryError, match="must be numbers, strings and lists"):
        client.narrow("history", {"diaObjectId": b"\x00", "before_mjd": 1.0}, 5, 1.0)
    with pytest.raises(QueryError, match="max_rows must be a 64-bit integer"):
        client._call("narrow", {"shape": "history", "params": {}, "max_rows": "all", "timeout_s": 1.0})


def counts_agree(info: dict) -> bool:
    return info["rows"]["DiaSource"] == info["rows"]["DiaObject"]


@pytest.mark.parametrize("through", ["in-process", "flight"])
def test_readers_see_whole_batches_while_the_owner_writes(served: tuple[Mirror, MirrorClient],
                                                         through: str) -> None:
    mirror, client = served
    reader = mirror if through == "in-process" else client
    batches = [batch(v) for v in range(1, 13)]
    done = threading.Event()
    seen: list[dict] = []

    def write() -> None:
        for tables in batches:
            mirror.ingest_tables(tables)  # both tables in one transaction
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        seen.append(reader.info())
    writer.join()
    seen.append(reader.info())
    assert all(counts_agree(info) for info in seen)
    assert len({info["rows"]["DiaSource"] for info in seen}) > 2, "reads interleaved with the writes"
    assert seen[-1]["rows"]["DiaSource"] == sum(t["DiaSource"].num_rows for t in batches)


def test_a_worker_uses_the_mirror_another_process_on_the_host_owns(tmp_path: Path, visits: list[list[dict]]) -> None:
    settings = Settings(ppdb_path=tmp_path / "ppdb.duckdb")
    socket = Path(settings.ppdb_listen_address().removeprefix("grpc+unix://"))
    owner = subprocess.Popen([sys.executable, "-m", "afs.cli", "ppdb", "serve"], env=os.environ | settings.as_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not socket.exists():
            assert owner.poll() is None and time.monotonic() < deadline, "afs ppdb serve did not start"
            time.sleep(0.1)
        worker = Owner(settings)
        try:
            assert isinstance(worker.mirror, MirrorClient) and worker.server is None
            worker.mirror.ingest_alerts(visits[0])
            assert worker.mirror.info()["rows"]["DiaSource"] >= len(visits[0])
        finally:
            worker.close()
    finally:
        owner.terminate()
        owner.wait(30)
