# tries: define a generator function to suspend and inspect frames
# expect: rejected
def gen():
    yield 1

def filter(alert):
    return next(gen()) == 1
