# tries: call RestrictedPython's guard functions by name
# expect: rejected
def filter(alert):
    return _getattr_(alert, "__class__") is not None
