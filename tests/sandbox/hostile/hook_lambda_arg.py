# tries: shadow a hook as a lambda parameter
# expect: rejected
def filter(alert):
    return (lambda _getattr_: _getattr_)(1) == 1
