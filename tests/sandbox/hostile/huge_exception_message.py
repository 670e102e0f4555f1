# tries: raise an exception with a 50 MB message to flood the result channel and the service's logs
# expect: error
def filter(alert):
    raise ValueError("x" * 50_000_000)
