# tries: a huge f-string field width to exhaust memory
# expect: kill
def filter(alert):
    width = 10 ** 10
    return len(f"{1:>{width}}") > 0
