# tries: reach object to walk subclasses
# expect: rejected
def filter(alert):
    return isinstance(alert, object)
