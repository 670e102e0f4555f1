# tries: grow a nested tuple a little on every call, hashing it each time, until hashing overflows the C stack (segfault)
# expect: kill
NEST = [()]


def filter(alert):
    nest = NEST[0]
    for i in range(40_000):
        nest = (((nest,),),)
    NEST[0] = nest
    return {nest: True}[nest] and False
