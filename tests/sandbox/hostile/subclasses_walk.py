# tries: the classic ().__class__.__base__.__subclasses__() walk to a file object
# expect: rejected
def filter(alert):
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "FileIO":
            return True
    return False
