# tries: dict.update on the shared alert
# expect: error
def filter(alert):
    alert.update({"diaSourceId": 0})
    return True
