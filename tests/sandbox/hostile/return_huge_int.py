# tries: return an integer too large for a float score
# expect: error
def filter(alert):
    return 10 ** 400
