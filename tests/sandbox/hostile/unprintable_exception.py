# tries: raise an exception whose message cannot be turned into text (deeply nested arguments), to crash the worker while it reports the error
# expect: error
def filter(alert):
    nest = []
    for i in range(100_000):
        nest = [nest]
    raise ValueError(nest)
