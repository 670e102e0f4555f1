# tries: 10 ** 10 ** 10: a big-integer power
# expect: error
def filter(alert):
    return 10 ** 10 ** 10 > 0
