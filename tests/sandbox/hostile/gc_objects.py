# tries: find host objects through the gc module
# expect: rejected
import gc

def filter(alert):
    return len(gc.get_objects()) > 0
