# tries: call __import__ directly
# expect: rejected
def filter(alert):
    return __import__("os").getcwd() != ""
