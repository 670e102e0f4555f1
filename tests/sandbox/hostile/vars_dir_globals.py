# tries: inspect namespaces with globals(), vars() and dir()
# expect: rejected
def filter(alert):
    return "os" in globals() or "x" in vars() or "y" in dir()
