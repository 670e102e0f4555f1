# tries: build a class dynamically with type(name, bases, dict)
# expect: rejected
def filter(alert):
    Evil = type("Evil", (), {"__eq__": lambda self, other: True})
    return Evil() == 1
