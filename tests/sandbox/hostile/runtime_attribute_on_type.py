# tries: call a type's method unbound (str.join on the type) to reach methods of type objects
# expect: error
def filter(alert):
    return str.join(",", ["a", "b"]) == "a,b"
