# tries: a zero-width joiner inside a name
# expect: rejected
def filter(alert):
    ok‍ = True
    return ok‍
