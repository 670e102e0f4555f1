# tries: a mutable default argument on the filter to carry hidden state
# expect: rejected
def filter(alert, seen=[]):
    seen.append(alert)
    return len(seen) > 1
