"""Rubin alert schemas by Confluent schema id (major*100 + minor), from the lsst-alert-packet package.

Ids the package does not ship can be fetched from a Confluent-compatible schema registry
(``GET {url}/schemas/ids/{id}`` -> ``{"schema": "<json>"}``), as Rubin's registry answers.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import cavro
import fastavro
from lsst.alert.packet.schema import Schema, get_latest_schema_version, get_schema_root

MIN_SUPPORTED = (7, 0)
_CAVRO_OPTIONS = cavro.Options(record_decodes_to_dict=True)


class UnknownSchemaError(LookupError):
    """No schema for this id: not shipped by lsst-alert-packet and not in the registry."""


def schema_id(major: int, minor: int) -> int:
    return major * 100 + minor


def latest_schema_id() -> int:
    return schema_id(*get_latest_schema_version())


def _shipped_versions() -> dict[int, Path]:
    """Alert schema files shipped by lsst-alert-packet, by schema id, from 7.0 up."""
    root = Path(get_schema_root())
    found: dict[int, Path] = {}
    for path in root.glob("*/*/lsst.v*_*.alert.avsc"):
        major, minor = int(path.parent.parent.name), int(path.parent.name)
        if (major, minor) >= MIN_SUPPORTED:
            found[schema_id(major, minor)] = path
    return found


def sample_alert_path(sid: int) -> Path:
    """The sample alert (JSON) lsst-alert-packet ships beside a schema."""
    return _shipped_versions()[sid].parent / "sample_data" / "alert.json"


class SchemaStore:
    """Parsed alert schemas, loaded once and shared; thread-safe for registry fetches."""

    def __init__(self, registry_url: str | None = None, registry_timeout_s: float = 5.0) -> None:
        self._files = _shipped_versions()
        self._parsed: dict[int, Any] = {}
        self._readers: dict[int, cavro.Schema] = {}
        self._json: dict[int, str] = {}
        self._registry_url = registry_url.rstrip("/") if registry_url else None
        self._timeout = registry_timeout_s
        self._lock = threading.Lock()

    @property
    def shipped_ids(self) -> list[int]:
        return sorted(self._files)

    def parsed(self, sid: int) -> Any:
        """The fastavro-parsed schema for an id, raising UnknownSchemaError if nobody knows it."""
        try:
            return self._parsed[sid]
        except KeyError:
            pass
        with self._lock:
            if sid not in self._parsed:
                definition = self._load(sid)
                self._json[sid] = json.dumps(definition)
                self._parsed[sid] = fastavro.parse_schema(definition)
            return self._parsed[sid]

    def reader(self, sid: int) -> cavro.Schema:
        """The schema as cavro's decoder, which reads these alerts ~2.4x faster than fastavro, returning the
        same dicts (afs.bench measures both; tests/test_codec.py checks they agree, on bad bodies too)."""
        try:
            return self._readers[sid]
        except KeyError:
            pass
        definition = self.schema_json(sid)
        with self._lock:
            if sid not in self._readers:
                try:
                    self._readers[sid] = cavro.Schema(definition, options=_CAVRO_OPTIONS)
                except Exception as exc:  # a registry's schema that breaks Avro's rules (e.g. a field twice)
                    raise UnknownSchemaError(f"schema id {sid} is not a valid Avro schema: {exc}") from None
            return self._readers[sid]

    def schema_json(self, sid: int) -> str:
        """The fully resolved schema as JSON text, as a schema registry would serve it."""
        self.parsed(sid)
        return self._json[sid]

    def _load(self, sid: int) -> Any:
        if sid in self._files:
            return Schema.from_file(str(self._files[sid])).definition
        if self._registry_url is None:
            raise UnknownSchemaError(f"schema id {sid} is not shipped by lsst-alert-packet and no registry is configured")
        url = f"{self._registry_url}/schemas/ids/{sid}"
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as response:
                return json.loads(json.loads(response.read())["schema"])
        except Exception as exc:  # any failure means the id stays unknown
            raise UnknownSchemaError(f"schema id {sid} not found in registry {self._registry_url}: {exc}") from None
