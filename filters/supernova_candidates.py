"""Young supernova candidates (DMS-REQ-0348: supernovae).

A new, reliable, positive transient where the template shows nothing brighter than a faint
host: psfFlux > 0 at S/N >= 10, reliability >= 0.8, templateFlux below a third of the new flux
(so not a variable star or galaxy nucleus), point-like in the difference image, no artefact
flags (dipole, cosmic ray, edge, saturation, streak) and no asteroid association. Seen at least
twice, 30 minutes or more apart (a moving object is not), always positive, with at most 8
detections over at most 40 days: the object is young.
"""
import helpers

NAME = "Supernova candidates"
READS = ("diaSource", "prvDiaSources")
WHERE = (("diaSource.ssObjectId", "is", None), ("diaSource.psfFlux", ">", 0), ("diaSource.reliability", ">=", 0.8))

ARTEFACTS = ("isDipole", "pixelFlags_cr", "pixelFlags_edge", "pixelFlags_saturated", "pixelFlags_streak")


def filter(alert):
    source = alert["diaSource"]
    if source["ssObjectId"] is not None:
        return False
    flux = source["psfFlux"]
    reliability = source["reliability"]
    if flux is None or not flux > 0 or reliability is None or not reliability >= 0.8:
        return False
    if not helpers.snr(flux, source["psfFluxErr"]) >= 10:
        return False
    if any(source[flag] is True for flag in ARTEFACTS):
        return False
    template = source["templateFlux"]
    if template is not None and template > flux / 3:
        return False
    extendedness = source["extendedness"]
    if extendedness is not None and extendedness > 0.5:
        return False
    points = helpers.light_curve(alert)
    if len(points) < 2 or len(points) > 8:
        return False
    if any(p["flux"] is None or p["flux"] <= 0 for p in points):
        return False
    span = points[-1]["mjd"] - points[0]["mjd"]
    return 0.02 <= span <= 40
