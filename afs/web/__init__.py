"""The scientists' web page, served by the API at ``/ui/`` (``/`` redirects there).

Plain static files (``static/``: one HTML page, one JavaScript module, a stylesheet, an icon), no
build step and nothing from elsewhere: the page signs in with an API token and calls the API's own
endpoints.
Every file goes out with a strict Content-Security-Policy (scripts and styles from this origin only,
no inline code, images from here or blob: URLs, not framed) and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
PATH = "/ui"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag), so a new version of the service shows at once
}


class WebPage(StaticFiles):
    """The static files, each with the security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount(app: FastAPI) -> None:
    app.mount(PATH, WebPage(directory=STATIC, html=True), name="web")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"{PATH}/")
