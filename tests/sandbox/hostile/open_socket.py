# tries: open a network connection
# expect: rejected
import socket

def filter(alert):
    socket.create_connection(("pypi.org", 443))
    return True
