# tries: return the alert itself, hoping the parent unpickles it
# expect: error
def filter(alert):
    return alert
