# tries: read an alert key not declared in READS
# expect: error
READS = ("diaSource",)

def filter(alert):
    return alert["diaObject"] is not None
