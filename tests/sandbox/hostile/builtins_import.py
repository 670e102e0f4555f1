# tries: reach __import__ through the __builtins__ dict
# expect: rejected
def filter(alert):
    return __builtins__["__import__"]("os") is not None
