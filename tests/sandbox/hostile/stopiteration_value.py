# tries: read StopIteration.value for an internal object
# expect: rejected
def filter(alert):
    try:
        next(iter(()))
    except StopIteration as exc:
        return exc.value is not None
