# tries: drop into a debugger or read stdin
# expect: rejected
def filter(alert):
    breakpoint()
    return input() == "x"
