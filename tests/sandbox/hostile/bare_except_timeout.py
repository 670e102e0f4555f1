# tries: swallow the sandbox's time limit with a bare except
# expect: rejected
def filter(alert):
    try:
        while True:
            pass
    except:
        return True
