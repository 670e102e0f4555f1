# tries: change math.pi for everyone
# expect: rejected
import math

def filter(alert):
    math.pi = 3.0
    return True
