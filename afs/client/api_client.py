"""A small synchronous client of the AFS API: credentials, JSON calls, and the SSE match stream."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from afs.config import Settings


class ApiError(Exception):
    """The API said no: its status, its message, and where a filter was refused, every problem."""

    def __init__(self, status: int, detail: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.problems = problems or []


@dataclass(frozen=True)
class Event:
    id: str | None
    kind: str
    data: dict[str, Any]


def credentials_path(settings: Settings) -> Path:
    return settings.credentials_file.expanduser()


def save_credentials(settings: Settings, url: str, token: str) -> Path:
    """Write the URL and token for later commands; readable only by this user."""
    path = credentials_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({"url": url, "token": token}, out)
    return path


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events from text lines: ``id``, ``event`` and ``data`` fields; comments skipped."""
    fields: dict[str, list[str]] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                event_id = fields.get("id", [None])[-1]
                yield Event(event_id, fields.get("event", ["message"])[-1], json.loads("\n".join(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))


class ApiClient:
    def __init__(self, url: str, token: str | None, timeout_s: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiClient:
        """AFS_API_URL / AFS_API_TOKEN when set, else what `afs login` saved."""
        saved: dict[str, str] = {}
        if credentials_path(settings).exists():
            saved = json.loads(credentials_path(settings).read_text())
        url = settings.api_url if "api_url" in settings.model_fields_set else saved.get("url", settings.api_url)
        return cls(url, settings.api_token or saved.get("token"))

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer, or ApiError."""
        response = self._http.request(method, path, **kwargs)
        self._raise_for(response)
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    def download(self, path: str, target: Path, **kwargs: Any) -> int:
        with self._http.stream("GET", path, **kwargs) as response:
            self._raise_for(response)
            with open(target, "wb") as out:
                return sum(out.write(chunk) for chunk in response.iter_bytes())

    def events(self, filter_id: str, *, start: str = "latest", last_event_id: str | None = None,
               limit: int | None = None) -> Iterator[Event]:
        """A filter's matches as they arrive (until ``limit``, or forever)."""
        params: dict[str, Any] = {"start": start} | ({"limit": limit} if limit is not None else {})
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        with self._http.stream("GET", f"/v1/filters/{filter_id}/stream", params=params, headers=headers,
                               timeout=httpx.Timeout(30.0, read=None)) as response:
            self._raise_for(response)
            yield from parse_events(response.iter_lines())

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        response.read()
        try:
            body = response.json()
        except ValueError:
            raise ApiError(response.status_code, response.text) from None
        detail = body.get("detail")
        raise ApiError(response.status_code, detail if isinstance(detail, str) else json.dumps(detail),
                       body.get("problems"))
