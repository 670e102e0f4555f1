# tries: change the cached light curve other filters share
# expect: error
import helpers

def filter(alert):
    points = helpers.light_curve(alert)
    points[0]["flux"] = -1.0
    return True
