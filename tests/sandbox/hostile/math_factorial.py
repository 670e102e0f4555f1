# tries: math.factorial of a huge number (minutes in C)
# expect: error
import math

def filter(alert):
    return math.factorial(10 ** 7) > 0
