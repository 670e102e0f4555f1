# tries: return nothing
# expect: error
def filter(alert):
    pass
