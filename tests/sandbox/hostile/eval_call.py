# tries: evaluate a string expression
# expect: rejected
def filter(alert):
    return eval("1 + 1") == 2
