# tries: shadow _getattr_ with a positional-only parameter
# expect: rejected
def peek(_getattr_, /):
    return _getattr_

def filter(alert):
    return peek(1) == 1
