"""Towhee operator `video-decode/ffmpeg`: Towhee glue around `timesformer_video.decode.VideoDecoder`.

The decoder itself (indexing, lazy frames, checked seeks, its errors) is in the `timesformer_video` package, which
`scripts/setup.sh` installs (`pip install -e .`), and knows nothing of Towhee: it gives RGB uint8 arrays with their
times. This file makes it a Towhee `PyOperator` whose arguments behave as the hub operator's (a frame at exactly
`end_time` is kept), whose frames are `towhee.types.VideoFrame`s (RGB, `timestamp` in ms, `key_frame`), lazily for
the unsampled call (`VideoFrames`), and lets `DataCollection.show()` draw those lazy frames as thumbnails
(`timesformer_video.display`). It is the only module that imports Towhee's frame type.
"""

import collections.abc
import sys
import warnings

from towhee.operator import PyOperator

with warnings.catch_warnings():  # towhee 1.1.3 imports pkg_resources, which warns on every import
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    from towhee.types import VideoFrame

try:
    from timesformer_video import decode, display
except ModuleNotFoundError as e:  # the operator copied into Towhee's cache without the package installed
    if e.name != 'timesformer_video':
        raise
    raise ModuleNotFoundError(f'video-decode/ffmpeg needs the timesformer_video package, which is not '
                              f'installed in {sys.executable}: in a clone of this operator\'s repository run '
                              f'`bash scripts/setup.sh` (or `pip install -e .`), then retry', name=e.name) from e

display.install_towhee_show()


def video_frame(frame):
    """A decoder `Frame` record as Towhee's `VideoFrame`: RGB uint8 (H, W, 3), `timestamp` in ms, `key_frame`."""
    return VideoFrame(frame.data, mode='RGB', timestamp=frame.timestamp, key_frame=frame.key_frame)


class VideoFrames(collections.abc.Sequence):
    """A `decode.LazyFrames` whose frames are `VideoFrame`s: decoded on access, with the same views, `take`, times
    and `error` (`frames.lazy` is the `LazyFrames` itself). Its repr and notebook view are the `LazyFrames`'."""

    def __init__(self, lazy):
        self.lazy = lazy

    def __len__(self):
        return len(self.lazy)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return VideoFrames(self.lazy[item])
        return video_frame(self.lazy.get_frame_at(item))

    def __iter__(self):
        return map(video_frame, self.lazy.iter_frames())

    def take(self, indices):
        """`LazyFrames.take`, as `VideoFrame`s."""
        return [video_frame(frame) for frame in self.lazy.get_frames_at(indices)]

    def __repr__(self):
        return repr(self.lazy)

    def _repr_html_(self):
        return self.lazy._repr_html_()

    times = property(lambda self: self.lazy.times, doc='`LazyFrames.times`: exact seconds per frame.')
    timestamps = property(lambda self: self.lazy.timestamps, doc='`LazyFrames.timestamps`: ms per frame.')
    fps = property(lambda self: self.lazy.fps, doc='`LazyFrames.fps`: exact frames per second.')
    duration = property(lambda self: self.lazy.duration, doc='`LazyFrames.duration`: seconds.')
    error = property(lambda self: self.lazy.error, doc='`LazyFrames.error`: where a truncated video stops.')
    index_method = property(lambda self: self.lazy.index_method, doc='`LazyFrames.index_method`.')


class VideoDecoder(decode.VideoDecoder, PyOperator):
    __doc__ = decode.VideoDecoder.__doc__

    def __init__(self, *args, include_end=True, **kwargs):
        PyOperator.__init__(self)
        decode.VideoDecoder.__init__(self, *args, include_end=include_end, **kwargs)

    def __call__(self, path):
        """As `decode.VideoDecoder.__call__`, with `VideoFrame`s: a lazy `VideoFrames` (sample_type=None), else a
        list of `VideoFrame`s."""
        if self._sample_type is None:
            return VideoFrames(super().__call__(path))
        return [video_frame(frame) for frame in self.sample(path)]

    def frames(self, path):
        """As `decode.VideoDecoder.frames`, as a lazy `VideoFrames`."""
        return VideoFrames(super().frames(path))
