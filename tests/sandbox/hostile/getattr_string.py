# tries: use getattr with a computed dunder name
# expect: rejected
def filter(alert):
    name = "_" + "_class_" + "_"
    return getattr(alert, name) is not None
