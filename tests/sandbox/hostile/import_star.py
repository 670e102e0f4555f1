# tries: star-import helpers to pick up hidden names
# expect: rejected
from helpers import *

def filter(alert):
    return True
