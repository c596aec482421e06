from .timesformer import Timesformer


def timesformer(*args, **kwargs):
    return Timesformer(*args, **kwargs)
