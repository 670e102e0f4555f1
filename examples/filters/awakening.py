"""Long-quiet objects flaring: at least five earlier detections in this band over the past ten years
(from the PPDB mirror, beyond the alert's own 12 months of history), and now more than 1.5 mag brighter
than their median."""

import math

from helpers import flux_to_mag, median, snr

NAME = "Awakening"
READS = ("diaSource",)
NEEDS = {"history": {"days": 3650, "columns": ("midpointMjdTai", "band", "psfFlux"), "max_rows": 500}}


def filter(alert):
    source = alert["diaSource"]
    if (source["reliability"] or 0) < 0.5 or not snr(source["psfFlux"], source["psfFluxErr"]) >= 10:
        return False
    past = [row["psfFlux"] for row in alert["ppdb"]["history"] if row["band"] == source["band"]]
    if len(past) < 5:
        return False
    brightening = flux_to_mag(median(past)) - flux_to_mag(source["psfFlux"])
    return not math.isnan(brightening) and brightening > 1.5
