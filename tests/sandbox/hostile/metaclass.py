# tries: a metaclass that runs code at class creation
# expect: rejected
class Meta(type):
    pass

class Evil(metaclass=Meta):
    pass

def filter(alert):
    return True
