# tries: an invisible Hangul filler used as a variable name
# expect: rejected
def filter(alert):
    ㅤ = True
    return ㅤ
