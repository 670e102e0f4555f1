# tries: a fullwidth letter that NFKC-normalises to the name eval
# expect: rejected
def filter(alert):
    return ｅval("1") == 1
