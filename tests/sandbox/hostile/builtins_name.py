# tries: read the __builtins__ mapping
# expect: rejected
def filter(alert):
    return "open" in __builtins__
