# tries: bind a hook name through a match-statement capture pattern
# expect: rejected
def filter(alert):
    match alert:
        case _getattr_:
            return True
