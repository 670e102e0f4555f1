# tries: rebind _getitem_ as an exception name
# expect: rejected
def filter(alert):
    try:
        1 / 0
    except ZeroDivisionError as _getitem_:
        return True
