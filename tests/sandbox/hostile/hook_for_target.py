# tries: rebind _inplacevar_ as a loop variable
# expect: rejected
def filter(alert):
    for _inplacevar_ in range(2):
        pass
    return True
