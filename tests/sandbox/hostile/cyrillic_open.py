# tries: a Cyrillic o in 'open' to dodge a name check
# expect: rejected
def filter(alert):
    return оpen("/etc/passwd") is not None
