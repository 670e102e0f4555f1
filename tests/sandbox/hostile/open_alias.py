# tries: take a reference to open under another name
# expect: rejected
reader = open

def filter(alert):
    return reader is not None
