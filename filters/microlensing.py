"""Microlensing candidates (DMS-REQ-0348: microlensing).

A lens magnifies its source star by the same factor in every band, smoothly, over weeks. Selects
a star already in the template (templateFlux > 0) within 20 deg of the Galactic plane, now
brighter than in the template by 25% to 20 times (psfFlux / templateFlux), with reliability
>= 0.7 and these detections: at least 4, over 5 to 150 days, every one above the template (the
star never fades below its baseline), its excess over the template (psfFlux / templateFlux, the
same in every band for a lens) rising steadily from each detection to the next within twice its
error, and achromatic: wherever two detections in different bands fall within a day of each
other, their excess agrees to within 15% plus 0.02, with at least one such pair.
"""
import helpers

NAME = "Microlensing candidates"
READS = ("diaSource", "prvDiaSources")
WHERE = (("diaSource.ssObjectId", "is", None), ("diaSource.reliability", ">=", 0.7),
         ("diaSource.templateFlux", ">", 0), ("diaSource.psfFlux", "is not", None))


def excess(record):
    template = record["templateFlux"]
    flux = record["psfFlux"]
    if template is None or flux is None or template <= 0:
        return None
    return flux / template


def filter(alert):
    source = alert["diaSource"]
    if source["ssObjectId"] is not None:
        return False
    reliability = source["reliability"]
    now = excess(source)
    if reliability is None or not reliability >= 0.7 or now is None or not 0.25 <= now <= 20:
        return False
    if abs(helpers.galactic_latitude(source["ra"], source["dec"])) > 20:
        return False
    records = list(alert["prvDiaSources"] or []) + [source]
    times = [r["midpointMjdTai"] for r in records]
    if len(records) < 4 or not 5 <= max(times) - min(times) <= 150:
        return False
    ratios = [excess(r) for r in records]
    if any(x is None or x <= 0 for x in ratios):
        return False
    order = sorted(range(len(records)), key=lambda i: times[i])
    for before, after in zip(order, order[1:]):
        slack = 2 * records[before]["psfFluxErr"] / records[before]["templateFlux"] + 0.02
        if ratios[after] < ratios[before] - slack:
            return False
    pairs = 0
    for i in range(len(records)):
        for j in range(i + 1, len(records)):
            if records[i]["band"] != records[j]["band"] and abs(times[i] - times[j]) < 1:
                if abs(ratios[i] - ratios[j]) > 0.15 * max(ratios[i], ratios[j]) + 0.02:
                    return False
                pairs = pairs + 1
    return pairs > 0
