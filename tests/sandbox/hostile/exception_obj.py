# tries: read AttributeError.obj to get the object behind a failed lookup
# expect: rejected
def filter(alert):
    try:
        alert.nothing
    except AttributeError as exc:
        return exc.obj is not None
