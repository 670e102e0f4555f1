# tries: allocate a list of a billion items
# expect: kill
def filter(alert):
    return len([0] * (10 ** 9)) > 0
