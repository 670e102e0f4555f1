# tries: compile code at run time
# expect: rejected
def filter(alert):
    return compile("1", "x", "eval") is not None
