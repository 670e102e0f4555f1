"""The DMTN-165 lightweight alert packet: ~200 bytes that say what exists and where to fetch it.

Fields follow DMTN-165's appendix table, spelled as in the v11 alert schema; the packet carries a
permanent URI to the full alert (``{base}/v1/alerts/{diaSourceId}``, Rubin's archive path). It is
framed like the full alerts (magic byte + schema id) with AFS's own schema id.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro

LIGHTWEIGHT_SCHEMA_ID = 900_001  # outside Rubin's major*100+minor range

_nullable = {"float": ["null", "float"], "double": ["null", "double"], "long": ["null", "long"],
             "string": ["null", "string"]}

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "lightweight",
    "namespace": "afs.v1",
    "doc": "DMTN-165 lightweight alert: a notification with a permanent URI to the full Rubin alert.",
    "fields": [
        {"name": "diaSourceId", "type": "long"},
        {"name": "alertUri", "type": "string", "doc": "Permanent URI of the full alert packet"},
        {"name": "schemaId", "type": "int", "doc": "Schema id of the full alert packet"},
        {"name": "visit", "type": _nullable["long"], "default": None},
        {"name": "band", "type": _nullable["string"], "default": None},
        {"name": "diaObjectId", "type": _nullable["long"], "default": None},
        {"name": "ssObjectId", "type": _nullable["long"], "default": None},
        {"name": "midpointMjdTai", "type": "double"},
        {"name": "ra", "type": "double"},
        {"name": "dec", "type": "double"},
        {"name": "psfFlux", "type": _nullable["float"], "default": None, "doc": "nJy"},
        {"name": "psfFluxErr", "type": _nullable["float"], "default": None},
        {"name": "scienceFlux", "type": _nullable["float"], "default": None, "doc": "nJy, total flux"},
        {"name": "scienceFluxErr", "type": _nullable["float"], "default": None},
        {"name": "snr", "type": _nullable["float"], "default": None},
        {"name": "trailLength", "type": _nullable["float"], "default": None},
        {"name": "extendedness", "type": _nullable["float"], "default": None},
        {"name": "reliability", "type": _nullable["float"], "default": None},
        {"name": "nPrvDiaSources", "type": "int", "doc": "Previous detections carried in the alert"},
        {"name": "lastPrvMjdTai", "type": _nullable["double"], "default": None,
         "doc": "Time of the most recent previous detection"},
        {"name": "psfFluxMean", "type": _nullable["float"], "default": None,
         "doc": "diaObject mean PSF flux in this band"},
        {"name": "psfFluxSigma", "type": _nullable["float"], "default": None},
    ],
}
PARSED = fastavro.parse_schema(SCHEMA)
_HEADER = struct.Struct(">bI")


def alert_uri(base_url: str, dia_source_id: int) -> str:
    return f"{base_url.rstrip('/')}/v1/alerts/{dia_source_id}"


def build(record: dict[str, Any], dia_source_id: int, schema_id: int, base_url: str) -> dict[str, Any]:
    """The lightweight record for one decoded alert (field names are stable from schema 7.0 on)."""
    source = record["diaSource"]
    obj = record.get("diaObject") or {}
    prv = record.get("prvDiaSources") or []
    band = source.get("band")
    prv_times = [p.get("midpointMjdTai") for p in prv]
    return {
        "diaSourceId": dia_source_id,
        "alertUri": alert_uri(base_url, dia_source_id),
        "schemaId": schema_id,
        "visit": source.get("visit"),
        "band": band,
        "diaObjectId": source.get("diaObjectId"),
        "ssObjectId": source.get("ssObjectId"),
        "midpointMjdTai": source["midpointMjdTai"],
        "ra": source["ra"],
        "dec": source["dec"],
        "psfFlux": source.get("psfFlux"),
        "psfFluxErr": source.get("psfFluxErr"),
        "scienceFlux": source.get("scienceFlux"),
        "scienceFluxErr": source.get("scienceFluxErr"),
        "snr": source.get("snr"),
        "trailLength": source.get("trailLength"),
        "extendedness": source.get("extendedness"),
        "reliability": source.get("reliability"),
        "nPrvDiaSources": len(prv),
        "lastPrvMjdTai": max((t for t in prv_times if t is not None), default=None),
        "psfFluxMean": obj.get(f"{band}_psfFluxMean") if band else None,
        "psfFluxSigma": obj.get(f"{band}_psfFluxSigma") if band else None,
    }


def encode(packet: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(_HEADER.pack(0, LIGHTWEIGHT_SCHEMA_ID))
    fastavro.schemaless_writer(out, PARSED, packet)
    return out.getvalue()


def decode(message: bytes) -> dict[str, Any]:
    magic, sid = _HEADER.unpack_from(message)
    if magic != 0 or sid != LIGHTWEIGHT_SCHEMA_ID:
        raise ValueError(f"not a lightweight packet (magic {magic}, schema id {sid})")
    return fastavro.schemaless_reader(io.BytesIO(message[_HEADER.size :]), PARSED, None)
