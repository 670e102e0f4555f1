# tries: str.format attribute walk '{0.__class__.__init__.__globals__}'
# expect: rejected
def filter(alert):
    return "{0.__class__.__init__.__globals__}".format(alert) != ""
