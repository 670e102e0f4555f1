# tries: define a coroutine and inspect cr_frame
# expect: rejected
async def coro():
    return 1

def filter(alert):
    return coro().cr_frame is not None
