# tries: rebind _write_ as a comprehension target
# expect: rejected
def filter(alert):
    return [1 for _write_ in range(3)] == [1, 1, 1]
