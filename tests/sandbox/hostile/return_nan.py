# tries: return NaN as a score
# expect: error
def filter(alert):
    return float("nan")
