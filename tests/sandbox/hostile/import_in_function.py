# tries: import subprocess lazily inside the filter body
# expect: rejected
def filter(alert):
    import subprocess
    return subprocess.call(["id"]) == 0
