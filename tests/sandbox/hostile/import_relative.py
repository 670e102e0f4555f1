# tries: a relative import that might resolve to the sandbox package
# expect: rejected
from . import helpers

def filter(alert):
    return True
