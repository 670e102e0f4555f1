# tries: reach importlib through a name the sandbox might have forgotten
# expect: rejected
def filter(alert):
    return importlib.import_module("os") is not None
