# tries: rebind _getattr_ through import ... as
# expect: rejected
import math as _getattr_

def filter(alert):
    return True
