# tries: define a class to override __eq__ and __getattr__
# expect: rejected
class Evil:
    def __eq__(self, other):
        return True

def filter(alert):
    return Evil() == alert
