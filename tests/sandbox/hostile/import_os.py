# tries: import the os module to reach files and processes
# expect: rejected
import os

def filter(alert):
    return os.path.exists("/etc/passwd")
