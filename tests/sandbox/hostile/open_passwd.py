# tries: read /etc/passwd with open
# expect: rejected
def filter(alert):
    return len(open("/etc/passwd").read()) > 0
