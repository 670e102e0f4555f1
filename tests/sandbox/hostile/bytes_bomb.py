# tries: allocate 10 GB of bytes
# expect: kill
def filter(alert):
    return len(bytes(10 ** 10)) > 0
