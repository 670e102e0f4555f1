# tries: keep running inside finally after the timer fires
# expect: timeout
def filter(alert):
    try:
        while True:
            pass
    finally:
        while True:
            pass
