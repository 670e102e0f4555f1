# tries: replace a helper for every filter
# expect: rejected
import helpers

def filter(alert):
    helpers.flux_to_mag = lambda flux: 0.0
    return True
