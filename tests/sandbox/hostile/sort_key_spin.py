# tries: spin inside a sort key called from C
# expect: timeout
def spin(x):
    while True:
        pass

def filter(alert):
    return sorted([3, 1, 2], key=spin) == [1]
