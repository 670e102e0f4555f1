# tries: take a reference to str.format without calling it through an attribute
# expect: rejected
def filter(alert):
    fmt = "{0.__class__}".format
    return fmt(alert) != ""
