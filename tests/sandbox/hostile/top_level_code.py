# tries: run arbitrary statements at module level
# expect: rejected
for i in range(10):
    pass

def filter(alert):
    return True
