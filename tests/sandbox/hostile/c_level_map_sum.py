# tries: a nested C-level loop that never returns to the interpreter
# expect: kill
def filter(alert):
    return sum(map(sum, [range(10 ** 7)] * 10 ** 4)) < 0
