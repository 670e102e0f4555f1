# tries: return a list to confuse result handling
# expect: error
def filter(alert):
    return [True, 1.0]
