# tries: sum(range(10**15)): a C-level loop over a huge range
# expect: error
def filter(alert):
    return sum(range(10 ** 15)) > 0
