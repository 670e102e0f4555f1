# tries: keep memory between calls until the worker starves its neighbours
# expect: kill
HOARD = []

def filter(alert):
    HOARD.append("x" * 50_000_000)
    return False
