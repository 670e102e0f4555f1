# tries: str.format_map attribute walk
# expect: rejected
def filter(alert):
    return "{a.__class__}".format_map({"a": alert}) != ""
