# tries: allocate a 10 GB string
# expect: kill
def filter(alert):
    return len("a" * (10 ** 10)) > 0
