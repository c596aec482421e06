"""Towhee operator `video-decode/ffmpeg`: Towhee glue around `timesformer_video.decode.VideoDecoder`.

The decoder itself (indexing, lazy frames, checked seeks, its errors) is in the `timesformer_video` package, which
`scripts/setup.sh` installs (`pip install -e .`); this file only makes it a Towhee `PyOperator` whose arguments
behave as the hub operator's (a frame at exactly `end_time` is kept), and lets `DataCollection.show()` draw its lazy
frames as thumbnails (`timesformer_video.display`).
"""

import sys

from towhee.operator import PyOperator

try:
    from timesformer_video import decode, display
except ModuleNotFoundError as e:  # the operator copied into Towhee's cache without the package installed
    if e.name != 'timesformer_video':
        raise
    raise ModuleNotFoundError(f'video-decode/ffmpeg needs the timesformer_video package, which is not '
                              f'installed in {sys.executable}: in a clone of this operator\'s repository run '
                              f'`bash scripts/setup.sh` (or `pip install -e .`), then retry', name=e.name) from e

display.install_towhee_show()


class VideoDecoder(decode.VideoDecoder, PyOperator):
    __doc__ = decode.VideoDecoder.__doc__

    def __init__(self, *args, include_end=True, **kwargs):
        PyOperator.__init__(self)
        decode.VideoDecoder.__init__(self, *args, include_end=include_end, **kwargs)
