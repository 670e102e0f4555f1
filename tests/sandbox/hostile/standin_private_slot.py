# tries: read the stand-in's private member table
# expect: rejected
import helpers

def filter(alert):
    return helpers._members is not None
