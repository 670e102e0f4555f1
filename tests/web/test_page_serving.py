"""Serving the web page, without a browser: where it is, its security headers, that it holds no inline
code or markup built from data, and the list of helpers the page shows beside the editor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from afs.web import STATIC
from sandbox import helpers
from sandbox.compiler import MODULE_MEMBERS
from tests.api.conftest import Api, make_settings, running_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("page")
    yield from running_api(make_settings(f"sqlite:///{tmp}/afs.db", tmp))


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_page_is_served_at_ui_and_the_root_leads_there(api: Api) -> None:
    home = api.client.get("/", follow_redirects=False)
    assert home.status_code == 307 and home.headers["location"] == "/ui/"
    page = api.client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js"></script>' in page.text


@pytest.mark.parametrize("path", ["/ui/", "/ui/app.js", "/ui/style.css", "/ui/favicon.svg"])
def test_every_file_has_a_strict_content_security_policy(api: Api, path: str) -> None:
    response = api.client.get(path)
    assert response.status_code == 200
    directives = response.headers["content-security-policy"].split(";")
    policy = dict(directive.strip().split(" ", 1) for directive in directives)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"
    assert policy["img-src"] == "'self' blob:" and policy["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_page_has_no_inline_code_and_loads_nothing_from_elsewhere() -> None:
    parser = Tags()
    parser.feed((STATIC / "index.html").read_text())
    for tag, attrs in parser.tags:
        assert tag != "style" and "style" not in attrs, f"inline style on <{tag}>"
        assert not any(name.startswith("on") for name in attrs), f"inline handler on <{tag}>"
        if tag == "script":
            assert attrs.get("src") == "app.js"
        for name in ("src", "href"):
            assert not re.match(r"[a-z]+:|//", attrs.get(name) or ""), f"<{tag} {name}> leaves the origin"
    script = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, f"app.js uses {sink}: render API data with textContent"


def test_the_package_ships_every_file_the_page_loads() -> None:
    parser = Tags()
    parser.feed((STATIC / "index.html").read_text())
    loaded = {attrs.get("src") or attrs.get("href") for tag, attrs in parser.tags if tag in ("script", "link")}
    assert loaded == {path.name for path in STATIC.iterdir()} - {"index.html"}
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"afs.web" = ["static/*"]' in pyproject


def test_the_helpers_beside_the_editor_come_from_the_sandbox(api: Api) -> None:
    assert api.client.get("/v1/helpers").status_code == 401
    listed = api.client.get("/v1/helpers", headers=api.user("scientist")).json()
    from_helpers = [m for m in listed if m["module"] == "helpers"]
    assert [m["name"] for m in from_helpers] == helpers.__all__
    assert {m["name"] for m in listed if m["module"] == "math"} == MODULE_MEMBERS["math"]
    by_name = {m["name"]: m for m in from_helpers}
    assert by_name["light_curve"]["signature"] == "light_curve(alert, band=None, forced=False)"
    assert by_name["ppdb_query"]["signature"] == "ppdb_query(kind, **params)"
    assert by_name["rise_rate"]["doc"].startswith("Slope of magnitude against MJD (mag/day)")
    assert all(m["doc"] for m in listed), "every member is documented"
