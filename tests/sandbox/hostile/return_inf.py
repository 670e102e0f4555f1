# tries: return infinity as a score
# expect: error
def filter(alert):
    return float("inf")
