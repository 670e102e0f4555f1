"""The web page (issue #9) in a real headless browser against the running service (embedded broker,
`afs api` and `afs worker`): a scientist signs in with a token, uploads a filter with an error and sees
it on its line, fixes it, dry-runs it (match rate, errors, CPU per alert, cutout images), saves and
activates it, and sees a live match appear after a simulated visit; an admin sees users, sets a quota
and disables a filter with a reason."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from afs.alerts.simulate import simulate_visit
from afs.archive import AlertArchive
from afs.config import Settings
from tests.api.live_service import (broker, create_user, live_settings, log_has,  # noqa: F401 (broker: a fixture)
                                    produce_alerts, serving, wait_for)

pytestmark = pytest.mark.slow

SEED = 3
ARCHIVED = 200  # the first visit, archived with its cutouts: the dry runs' sample (dry_run_alerts is 200)
MODULUS = 30  # matches 1 in 30: under the 5% activation gate
BROKEN = f'''"""Every {MODULUS}th source."""
from helpers import snr
import os


def filter(alert):
    return alert["diaSourceId"] % {MODULUS} == 0
'''
FIXED = BROKEN.replace("import os\n", "")
SLOW_MS = 60_000  # dry runs start a sandbox pool; a visit goes through the worker


@dataclass
class Service:
    settings: Settings
    tokens: dict[str, str]
    worker_log: Path
    first_visit: list[dict]


@pytest.fixture(scope="module")
def service(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("web")
    settings = live_settings(f"sqlite:///{tmp}/afs.db", tmp, broker)
    tokens = {"scientist": create_user(settings, "scientist"), "admin": create_user(settings, "root", "--admin")}
    with serving(settings, tmp) as worker_log:
        first_visit = simulate_visit(1, ARCHIVED, SEED)
        produce_alerts(settings, first_visit)
        archive = AlertArchive(settings.archive_dir)
        wait_for(lambda: len(archive.ids()) == ARCHIVED, "the first visit to be archived")
        archive.close()
        yield Service(settings, tokens, worker_log, first_visit)


def matching(alerts: list[dict]) -> set[int]:
    return {a["diaSourceId"] for a in alerts if a["diaSourceId"] % MODULUS == 0}


def signed_in(browser: BrowserContext, service: Service, who: str) -> tuple[Page, list[str]]:
    """A new tab signed in as ``who``, and the list its script errors and CSP violations go to."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda message: "Content Security Policy" in message.text and problems.append(message.text))
    page.goto(service.settings.api_url)  # / redirects to the page, /ui/
    page.get_by_label("Your API token").fill(service.tokens[who])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who-name")).to_have_text(f"Signed in as {'root (admin)' if who == 'admin' else who}")
    return page, problems


def figure(page: Page, section: str, term: str) -> str:
    """The value shown for ``term`` in one of the page's lists of figures."""
    return page.locator(f"#{section} dt:text-is('{term}') + dd").inner_text()


def test_write_check_dry_run_activate_and_watch_a_filter(browser: BrowserContext, service: Service) -> None:
    page, problems = signed_in(browser, service, "scientist")
    expect(page.locator("#admin")).to_be_hidden()
    expect(page.locator("#helpers dt").first).to_have_text("flux_to_mag(flux_njy)")  # from the sandbox's module
    expect(page.locator("#usage tbody")).to_contain_text("cutout_bytes")

    editor = page.get_by_label("Filter source (Python)")
    page.get_by_label("Name (used when").fill("web filter")
    editor.fill(BROKEN)
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("#problems li")).to_have_count(1)
    expect(page.locator("#problems li")).to_contain_text("Line 3, column 1: importing 'os' is not allowed")
    expect(page.locator("#gutter .problem")).to_have_text("3")  # the line number, marked

    editor.fill(FIXED)
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#editor-status")).to_have_text("Dry run done: nothing was stored.", timeout=SLOW_MS)
    expect(page.locator("#problems li")).to_have_count(0)
    expect(page.locator("#gutter .problem")).to_have_count(0)
    want = matching(service.first_visit)
    assert figure(page, "dry-run-report", "Sample") == f"{ARCHIVED} archived alerts"
    assert figure(page, "dry-run-report", "Matched") == f"{len(want)} of {ARCHIVED}"
    assert figure(page, "dry-run-report", "Match rate") == f"{100 * len(want) / ARCHIVED:.2f} %"
    assert figure(page, "dry-run-report", "Errors") == "0"
    assert re.fullmatch(r"[\d.,]+ µs", figure(page, "dry-run-report", "CPU per alert (p50)"))
    rows = page.locator("#matches tbody tr")
    expect(rows).to_have_count(min(len(want), 10))
    assert {int(text) for text in rows.locator("td:first-child").all_inner_texts()} <= want
    page.wait_for_function("() => document.querySelectorAll('#matches tbody tr:first-child img').length === 3 && "
                           "[...document.querySelectorAll('#matches img')].every("
                           "    image => image.complete && image.naturalWidth > 0)", timeout=SLOW_MS)
    expect(page.get_by_role("img", name=re.compile("difference cutout of"))).not_to_have_count(0)

    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("#editor-status")).to_contain_text("Saved version 1 of web filter", timeout=SLOW_MS)
    filter_id = re.search(r"\((\w+)\)\.$", page.locator("#editor-status").inner_text()).group(1)
    page.get_by_role("button", name="Activate the latest version").click()
    expect(page.locator("#editor-status")).to_contain_text("Version 1 is active")
    assert figure(page, "details-figures", "Status") == "active"
    expect(page.locator("#versions tbody")).to_contain_text("1 (active)")
    expect(page.locator("#live-status")).to_contain_text("Watching", timeout=SLOW_MS)

    wait_for(lambda: log_has(service.worker_log, f"{filter_id}@v1"), "the worker to load the filter")
    second_visit = simulate_visit(2, 300, SEED, cutouts=False)
    produce_alerts(service.settings, second_visit)
    first_match = page.locator("#live-matches tbody tr").first
    expect(first_match).to_be_visible(timeout=SLOW_MS)
    assert int(first_match.locator("td").nth(1).inner_text()) in matching(second_visit)
    expect(page.locator("#live-matches tbody tr")).to_have_count(len(matching(second_visit)), timeout=SLOW_MS)

    def stats_counted() -> bool:
        page.locator("#refresh-details").click()
        return figure(page, "stats", "Alerts seen") == "300"

    wait_for(stats_counted, "the worker's stats")
    assert figure(page, "stats", "Matched") == str(len(matching(second_visit)))
    assert not problems
    page.close()


def test_an_admin_sees_users_sets_quotas_and_moderates_filters(browser: BrowserContext, service: Service) -> None:
    scientist = httpx.Client(base_url=service.settings.api_url, timeout=120,
                             headers={"Authorization": f"Bearer {service.tokens['scientist']}"})
    source = f'def filter(alert):\n    return alert["diaSourceId"] % {MODULUS + 1} == 0\n'
    made = scientist.post("/v1/filters", json={"source": source, "name": "to moderate"}).json()["filter"]
    page, problems = signed_in(browser, service, "admin")

    expect(page.locator("#admin-users tbody")).to_contain_text("scientist")
    page.get_by_role("button", name="Quotas of scientist").click()
    page.get_by_label("alerts", exact=True).fill("500")
    page.get_by_role("button", name="Save quotas").click()
    expect(page.locator("#admin-status")).to_have_text("Saved the quotas of scientist.")
    quotas = scientist.get("/v1/users/scientist/quotas").json()
    assert quotas["alerts"] == 500 and quotas["overridden"] == ["alerts"]

    row = page.locator("#admin-filters tbody tr", has_text=made["id"])
    row.get_by_role("button", name="Disable to moderate").click()
    expect(page.locator("#admin-status")).to_have_text("Give a reason: the filter's owner sees it.")
    row.get_by_label("Reason for to moderate").fill("matches every asteroid")
    row.get_by_role("button", name="Disable to moderate").click()
    expect(page.locator("#admin-status")).to_have_text("Disabled to moderate.")
    expect(page.locator("#admin-filters tbody tr", has_text=made["id"])).to_contain_text(
        "disabled by root: matches every asteroid")
    shown = scientist.get(f"/v1/filters/{made['id']}").json()
    assert shown["status"] == "disabled" and shown["moderation"]["reason"] == "matches every asteroid"
    assert not problems
    scientist.close()
    page.close()
