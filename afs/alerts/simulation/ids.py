"""Source ids: diaSourceId = visit << 22 | slot (slot unique within a field); diaForcedSourceId also sets bit 21."""

from __future__ import annotations

import numpy as np

ID_BITS = 22                # diaSourceId = visit << 22 | slot; slots stay below 2**21 (2 visits of < 2**20)
FORCED_BIT = 1 << 21        # set in diaForcedSourceIds so they never repeat a diaSourceId


def source_ids(visit: np.ndarray, slot: np.ndarray) -> np.ndarray:
    return (np.asarray(visit, np.int64) << ID_BITS) | np.asarray(slot, np.int64)
