# tries: walk from a helper function to its module globals (math, real modules)
# expect: rejected
import helpers

def filter(alert):
    return helpers.flux_to_mag.__globals__["math"] is not None
