# tries: pow() with a huge exponent
# expect: error
def filter(alert):
    return pow(7, 10 ** 9) > 0
