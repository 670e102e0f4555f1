# tries: hide an import of sys behind an innocent alias
# expect: rejected
import math as m
import sys as helpers_sys

def filter(alert):
    return helpers_sys.modules is not None
