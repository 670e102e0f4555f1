# tries: follow __context__ from a helper's exception to the original
# expect: rejected
import helpers

def filter(alert):
    try:
        helpers.light_curve(42)
    except TypeError as exc:
        return exc.__context__ is not None
