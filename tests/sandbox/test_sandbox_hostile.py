"""The hostile corpus (tests/sandbox/hostile/): every filter there is rejected,
raises, times out or is killed; none matches; none reads a file, an environment
variable or the network; a benign filter in the same batch still gets exactly
its results; and the pool recovers."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FAST_LIMITS

from sandbox import FilterRejected, FilterSpec, SandboxPool, compile_filter
from sandbox import helpers

HOSTILE_DIR = Path(__file__).parent / "hostile"
EXPECTATIONS = {"rejected", "load-error", "error", "timeout", "kill", "no-match"}

BENIGN = '''"""Brightening, significant detections; the score is the brightening rate."""
import math
from helpers import rise_rate, snr

NAME = "benign riser"
READS = ("diaSource", "prvDiaSources")


def filter(alert):
    source = alert["diaSource"]
    if not snr(source["psfFlux"], source["psfFluxErr"]) > 5:
        return False
    rate = rise_rate(alert)
    if math.isnan(rate) or rate >= 0:
        return False
    return -rate
'''


def benign_expected(alerts: list[dict]) -> list[tuple[int, float]]:
    """The benign filter in plain Python, on the raw alerts."""
    matches = []
    for index, alert in enumerate(alerts):
        source = alert["diaSource"]
        if not helpers.snr(source["psfFlux"], source["psfFluxErr"]) > 5:
            continue
        view = {"diaSource": source, "prvDiaSources": alert["prvDiaSources"]}
        rate = helpers.rise_rate(view)
        if not math.isnan(rate) and rate < 0:
            matches.append((index, -rate))
    return matches


@dataclass(frozen=True)
class Hostile:
    name: str
    tries: str
    expect: str
    source: str


def _load_corpus() -> list[Hostile]:
    corpus = []
    for path in sorted(HOSTILE_DIR.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        header = dict(line[2:].split(": ", 1) for line in text.splitlines()[:2])
        corpus.append(Hostile(path.stem, header["tries"], header["expect"], text))
    return corpus


CORPUS = _load_corpus()
REJECTED = [h for h in CORPUS if h.expect == "rejected"]
RUNNABLE = [h for h in CORPUS if h.expect != "rejected"]


def test_corpus_is_large_and_documented() -> None:
    assert len(CORPUS) >= 60
    for hostile in CORPUS:
        assert hostile.tries.strip(), hostile.name
        assert hostile.expect in EXPECTATIONS, hostile.name


@pytest.mark.parametrize("hostile", REJECTED, ids=lambda h: h.name)
def test_rejected_at_compile_time(hostile: Hostile) -> None:
    with pytest.raises(FilterRejected) as caught:
        compile_filter(hostile.source)
    rejection = caught.value
    assert rejection.reason
    located = [p for p in rejection.problems if p.line is not None]
    # Everything but whole-file refusals points at a line of the file.
    assert located or "filter" in rejection.reason, rejection.problems


@pytest.mark.parametrize("hostile", RUNNABLE, ids=lambda h: h.name)
def test_runnable_hostiles_compile(hostile: Hostile) -> None:
    compile_filter(hostile.source)


def _texts(result: object, rejections: dict[str, FilterRejected]) -> str:
    return repr(result) + "".join(str(r) + repr(r.problems) for r in rejections.values())


def test_hostile_batch_is_contained(alerts: list[dict], planted_secrets: tuple[str, str, Path]) -> None:
    file_secret, env_secret, _ = planted_secrets
    specs = [FilterSpec("benign", "alice", BENIGN)]
    specs += [FilterSpec(h.name, f"mallory-{h.name}", h.source) for h in RUNNABLE]
    expected = benign_expected(alerts)
    assert expected, "the sample batch should give the benign filter something to match"
    with SandboxPool(FAST_LIMITS) as pool:
        rejections = pool.set_filters(specs)
        assert set(rejections) == {h.name for h in RUNNABLE if h.expect == "load-error"}
        outputs = [_texts(None, rejections)]

        first = pool.run_batch(alerts)
        outputs.append(_texts(first, {}))
        assert first.outcomes["benign"].matches == expected
        assert first.outcomes["benign"].errors == []
        for hostile in RUNNABLE:
            if hostile.expect == "load-error":
                assert hostile.name not in first.outcomes
                continue
            outcome = first.outcomes[hostile.name]
            assert outcome.matches == [], hostile.name
            if hostile.expect == "error":
                assert outcome.errors, hostile.name
            elif hostile.expect == "timeout":
                assert outcome.timeouts or outcome.kills, hostile.name
            elif hostile.expect == "kill":
                assert outcome.kills, hostile.name
            else:
                assert not outcome.kills and not outcome.timeouts, hostile.name

        second = pool.run_batch(alerts)  # the pool recovered: same exact results
        outputs.append(_texts(second, {}))
        assert second.outcomes["benign"].matches == expected
        assert all(not o.matches for fid, o in second.outcomes.items() if fid != "benign")

        assert pool.set_filters([FilterSpec("benign", "alice", BENIGN)]) == {}
        third = pool.run_batch(alerts)
        assert third.outcomes["benign"].matches == expected
        assert third.outcomes["benign"].kills == 0

    text = "".join(outputs)
    assert file_secret not in text and env_secret not in text
