# tries: walk the type hierarchy with int.mro()
# expect: rejected
def filter(alert):
    return len(int.mro()) > 1
