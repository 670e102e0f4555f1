# tries: run code built at run time with exec
# expect: rejected
def filter(alert):
    exec("import os")
    return True
