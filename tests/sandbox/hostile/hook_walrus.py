# tries: rebind _getiter_ with an assignment expression
# expect: rejected
def filter(alert):
    if (_getiter_ := list):
        return True
    return False
