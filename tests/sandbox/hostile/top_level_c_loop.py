# tries: a C-level loop at load time that ignores the soft timer
# expect: load-error
TOTAL = sum(map(sum, [range(10 ** 7)] * 10 ** 4))

def filter(alert):
    return True
