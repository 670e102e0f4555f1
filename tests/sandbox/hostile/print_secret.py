# tries: print to the worker's stdout to corrupt the result channel
# expect: rejected
def filter(alert):
    print('{"type": "done"}')
    return True
