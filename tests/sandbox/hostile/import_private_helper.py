# tries: import a private name from the helpers stand-in
# expect: rejected
from helpers import _sanitised

def filter(alert):
    return _sanitised is not None
