# tries: declare a hook global and replace it
# expect: rejected
def filter(alert):
    global _getattr_
    _getattr_ = lambda obj, name: obj
    return True
