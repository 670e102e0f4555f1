# tries: reach frames through a generator expression's gi_frame
# expect: rejected
def filter(alert):
    gen = (x for x in ())
    return gen.gi_frame.f_back.f_globals is not None
