# tries: repr a deeply nested list to recurse in C
# expect: error
def filter(alert):
    nest = []
    for i in range(200_000):
        nest = [nest]
    return len(repr(nest)) > 0
