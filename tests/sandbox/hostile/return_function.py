# tries: return a function for the parent to call
# expect: error
def filter(alert):
    return filter
