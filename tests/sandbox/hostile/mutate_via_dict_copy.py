# tries: copy the alert, mutate the copy, and check whether the original changed
# expect: no-match
def filter(alert):
    copy = dict(alert)
    copy["diaSourceId"] = -1
    inner = dict(alert["diaSource"])
    inner["psfFlux"] = -1.0
    return alert["diaSourceId"] == -1 or alert["diaSource"]["psfFlux"] == -1.0
