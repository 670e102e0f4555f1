# tries: look for host objects in the args of exceptions raised by the sandbox and helpers
# expect: no-match
import helpers

PLAIN = (str, int, float, bool, bytes, tuple)

def leaks(exc):
    for arg in exc.args:
        if not isinstance(arg, PLAIN) and arg is not None:
            return True
    return False

def filter(alert):
    try:
        alert.pop("diaSource")
    except AttributeError as exc:
        if leaks(exc):
            return True
    try:
        alert["no such key"]
    except KeyError as exc:
        if leaks(exc):
            return True
    try:
        helpers.light_curve(alert, band=3)
    except TypeError as exc:
        if leaks(exc):
            return True
    try:
        helpers.slope([1, 2], [1])
    except ValueError as exc:
        if leaks(exc):
            return True
    return False
