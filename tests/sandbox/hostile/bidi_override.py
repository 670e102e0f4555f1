# tries: a right-to-left override that makes a comment hide code (Trojan Source)
# expect: rejected
def filter(alert):
    access = "user"
    if access != "user‮ ⁦# admin⁩ ⁦":
        return True
    return False
