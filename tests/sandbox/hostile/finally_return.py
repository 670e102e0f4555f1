# tries: swallow the time limit by returning from finally
# expect: rejected
def filter(alert):
    try:
        while True:
            pass
    finally:
        return True
