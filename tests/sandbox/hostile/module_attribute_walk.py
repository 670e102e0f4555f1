# tries: walk from the math stand-in to a real module
# expect: rejected
import math

def filter(alert):
    return math.__class__.__dict__ is not None
