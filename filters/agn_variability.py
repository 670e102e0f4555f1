"""Bright AGN-like variables: smooth, stochastic variability of a bright source off the plane.

Quasar and Seyfert nuclei vary as red noise: little from one visit to the next, a lot over
months. The von Neumann ratio (mean squared difference of consecutive fluxes over their
variance, here pooled over bands) measures that: about 2 for uncorrelated scatter such as a
short-period variable star sampled every few days, well below 1 for red noise. Selects at
least 6 detections spanning 30 days or more with at least 4 same-band steps and a ratio below
0.8, both brighter and fainter than the template (it varies about a mean, unlike a transient),
every change under 40% of the template flux (a nucleus varying on its host; large-amplitude
long-period variable stars, also smooth, change more), a template brighter than magnitude
21.5, more than 20 deg from the Galactic plane, and a reliable detection (>= 0.8).
"""
import helpers

NAME = "AGN-like variables"
READS = ("diaSource", "prvDiaSources")
WHERE = (("diaSource.ssObjectId", "is", None), ("diaSource.reliability", ">=", 0.8),
         ("diaSource.templateFlux", ">", 0))

BANDS = ("u", "g", "r", "i", "z", "y")


def filter(alert):
    source = alert["diaSource"]
    if source["ssObjectId"] is not None:
        return False
    reliability = source["reliability"]
    template = source["templateFlux"]
    if reliability is None or not reliability >= 0.8 or template is None or not template > 0:
        return False
    if not helpers.flux_to_mag(template) < 21.5:
        return False
    if abs(helpers.galactic_latitude(source["ra"], source["dec"])) < 20:
        return False
    points = [p for p in helpers.light_curve(alert) if p["flux"] is not None]
    if len(points) < 6 or points[-1]["mjd"] - points[0]["mjd"] < 30:
        return False
    fluxes = [p["flux"] for p in points]
    if min(fluxes) >= 0 or max(fluxes) <= 0 or max(abs(f) for f in fluxes) >= 0.4 * template:
        return False
    steps = []
    deviations = []
    for band in BANDS:
        series = [p["flux"] for p in points if p["band"] == band]
        if len(series) >= 2:
            centre = helpers.mean(series)
            deviations = deviations + [(f - centre) ** 2 for f in series]
            steps = steps + [(series[i + 1] - series[i]) ** 2 for i in range(len(series) - 1)]
    if len(steps) < 4:
        return False
    variance = sum(deviations) / len(steps)
    return variance > 0 and sum(steps) / len(steps) / variance < 0.8
