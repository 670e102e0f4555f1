# tries: unbounded Python recursion
# expect: error
def dive(n):
    return dive(n + 1)

def filter(alert):
    return dive(0)
