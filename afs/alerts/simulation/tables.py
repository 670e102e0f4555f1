"""Column tables (dict of equal-length arrays, one row per object or source): select, concatenate, order.

Object tables hold one row per alert being built; source tables point at their object's row with ``_oi``
(and carry the band index as ``_band``).
"""

from __future__ import annotations

import numpy as np


def take_rows(table: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in table.items()}


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Row-wise concatenation; a key missing from a part is filled with NaN, -1, False or ''."""
    parts = [p for p in parts if p]
    keys = list(dict.fromkeys(k for p in parts for k in p))
    sizes = [len(next(iter(p.values()))) for p in parts]
    out = {}
    for key in keys:
        like = next(p[key] for p in parts if key in p)
        fill = {"f": np.nan, "i": -1, "b": False, "U": ""}[like.dtype.kind]
        out[key] = np.concatenate([p[key] if key in p else np.full((size,) + like.shape[1:], fill, like.dtype)
                                   for p, size in zip(parts, sizes)])
    return out


def sort_by_owner(table: dict) -> dict:
    """Rows ordered by owning alert, then time."""
    if not table:
        return table
    return take_rows(table, np.lexsort((table["midpointMjdTai"], table["_oi"])))
