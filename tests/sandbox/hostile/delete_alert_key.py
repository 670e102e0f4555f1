# tries: delete a key from the shared alert
# expect: error
def filter(alert):
    del alert["diaSource"]
    return True
