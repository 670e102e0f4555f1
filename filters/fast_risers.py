"""Fast risers: kilonova-like and other rapidly brightening transients.

Brightening faster than 0.5 mag/day: the least-squares slope of magnitude against time over
the detections of the last 5 days is below -0.5 mag/day, from at least two detections at
least half a day apart (a same-night pair is too noisy to measure a rate). Only transients
without a bright counterpart in the template (templateFlux below half the new flux): on a
variable star, difference-image magnitudes swing by magnitudes for a small change in the
star. The new detection must be positive at S/N >= 7 with reliability >= 0.7, unflagged as a
dipole, cosmic ray or streak, and not associated with a known asteroid.
"""
import helpers

NAME = "Fast risers (> 0.5 mag/day)"
READS = ("diaSource", "prvDiaSources")
WHERE = (("diaSource.ssObjectId", "is", None), ("diaSource.psfFlux", ">", 0), ("diaSource.reliability", ">=", 0.7))


def filter(alert):
    source = alert["diaSource"]
    if source["ssObjectId"] is not None:
        return False
    flux = source["psfFlux"]
    reliability = source["reliability"]
    if flux is None or not flux > 0 or reliability is None or not reliability >= 0.7:
        return False
    if not helpers.snr(flux, source["psfFluxErr"]) >= 7:
        return False
    template = source["templateFlux"]
    if template is not None and template > flux / 2:
        return False
    if source["isDipole"] is True or source["pixelFlags_cr"] is True or source["pixelFlags_streak"] is True:
        return False
    latest = source["midpointMjdTai"]
    recent = [p for p in helpers.light_curve(alert)
              if p["mjd"] >= latest - 5 and p["flux"] is not None and p["flux"] > 0]
    if len(recent) < 2 or latest - recent[0]["mjd"] < 0.5:
        return False
    return helpers.rise_rate(alert, None, 5) < -0.5
