# tries: shadow _apply_ as a **kwargs parameter
# expect: rejected
def call(**_apply_):
    return _apply_

def filter(alert):
    return call(x=1) == {"x": 1}
