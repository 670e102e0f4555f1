# tries: spin while the module loads, before any alert
# expect: load-error
def spin():
    while True:
        pass

STATE = spin()

def filter(alert):
    return True
