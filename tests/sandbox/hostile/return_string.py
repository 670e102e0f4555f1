# tries: return a string (truthy) instead of a bool
# expect: error
def filter(alert):
    return "yes"
