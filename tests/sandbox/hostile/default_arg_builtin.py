# tries: capture a forbidden builtin as a default value
# expect: rejected
def reader(path, read=open):
    return read(path)

def filter(alert):
    return reader("/etc/passwd") != ""
