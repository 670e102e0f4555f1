"""Blue, fast-rising extragalactic transients: kilonova and shock-cooling candidates.

A worked example of the filter format. The alert must be a reliable, clearly significant
detection away from the Galactic plane, brightening by more than 0.3 mag/day over the last
three nights in its band, and with a g-band detection in the object's history bluer
than its r-band mean. Returns the rise rate as a score, so faster risers rank first.
"""

import math

from helpers import flux_to_mag, galactic_latitude, light_curve, rise_rate

NAME = "Blue fast transients"
READS = ("diaSource", "prvDiaSources", "diaObject")


def filter(alert):
    source = alert["diaSource"]
    if (source["reliability"] or 0) < 0.8 or (source["snr"] or 0) < 10:
        return False
    if abs(galactic_latitude(source["ra"], source["dec"])) < 15:
        return False
    rate = rise_rate(alert, band=source["band"], days=3)
    if math.isnan(rate) or rate > -0.3:
        return False
    obj = alert["diaObject"]
    g_points = light_curve(alert, band="g")
    if obj is None or not g_points:
        return False
    g_mag = flux_to_mag(g_points[-1]["flux"])
    r_mean = flux_to_mag(obj["r_psfFluxMean"])
    if math.isnan(g_mag) or math.isnan(r_mean) or g_mag - r_mean > 0:
        return False
    return -rate
