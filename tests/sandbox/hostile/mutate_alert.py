# tries: change a field of the shared alert so other filters see it
# expect: error
def filter(alert):
    alert["diaSource"]["psfFlux"] = -1.0
    return True
