# tries: square an integer until each multiplication takes seconds
# expect: timeout
def filter(alert):
    x = 3
    while True:
        x = x * x
