# tries: read and replace a function's code object
# expect: rejected
def helper(x):
    return x

def filter(alert):
    helper.__code__ = filter.__code__
    return True
