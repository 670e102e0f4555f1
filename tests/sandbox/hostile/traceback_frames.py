# tries: walk an exception's traceback to frame globals
# expect: rejected
def filter(alert):
    try:
        1 / 0
    except ZeroDivisionError as exc:
        return exc.__traceback__.tb_frame.f_globals is not None
