# tries: an endless iterator from iter(callable, sentinel)
# expect: timeout
def filter(alert):
    for value in iter(lambda: 1, 2):
        pass
