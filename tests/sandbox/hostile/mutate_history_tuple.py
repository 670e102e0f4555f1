# tries: append to the shared history through augmented assignment
# expect: rejected
def filter(alert):
    alert["prvDiaSources"] += ({"psfFlux": 1.0},)
    return True
