# tries: spin forever in a Python loop
# expect: timeout
def filter(alert):
    while True:
        pass
