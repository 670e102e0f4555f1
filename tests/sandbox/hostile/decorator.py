# tries: a decorator that swaps the filter for something else
# expect: rejected
import helpers

@helpers.mean
def filter(alert):
    return True
