"""Bright, high-confidence detections: the cleanest alerts of a visit.

S/N >= 50 on the difference image, reliability >= 0.95, no pixel flags that make the
photometry suspect (bad, saturated, cosmic ray, edge, interpolated at the centre, streak),
not a dipole and not a known asteroid. A starting point for follow-up of anything bright.
"""
NAME = "Bright reliable detections"
READS = ("diaSource",)
WHERE = (("diaSource.ssObjectId", "is", None), ("diaSource.snr", ">=", 50), ("diaSource.reliability", ">=", 0.95))

SUSPECT = ("pixelFlags_bad", "pixelFlags_saturated", "pixelFlags_cr", "pixelFlags_edge",
           "pixelFlags_interpolatedCenter", "pixelFlags_streak", "isDipole")


def filter(alert):
    source = alert["diaSource"]
    if source["ssObjectId"] is not None:
        return False
    snr = source["snr"]
    reliability = source["reliability"]
    if snr is None or not snr >= 50 or reliability is None or not reliability >= 0.95:
        return False
    return not any(source[flag] is True for flag in SUSPECT)
