"""How lazy frames look in a notebook: a few thumbnails, in Jupyter's HTML view and in Towhee's `DataCollection.show()`.

A `LazyFrames` is a sequence, not a list, so Towhee 1.1.3's HTML table (`towhee.utils.html_table._to_html_td`, which
draws a list or tuple of `VideoFrame`s as images and anything else as its text cut to 128 characters) showed its
repr. `install_towhee_show()` adds that case to Towhee's table: a cell of lazy frames (a `LazyFrames`, or the
operator's `VideoFrames` around one: any `frames.Frames`) holds `frames_html(frames)`, a few
frames spread over the view and what the view is; every other cell is drawn by Towhee as before. In a terminal
`show()` prints a text table, where a `LazyFrames` is its repr (`LazyFrames('clip.mp4', 75 frames, ...)`).

Thumbnails are decoded with the frames' own `take` and encoded as PNG with PyAV: no OpenCV or matplotlib needed
(Towhee's own image cells need both: `video_decode/requirements.txt` installs them).
"""

import base64
import html
import importlib.util

import av

from .errors import VideoDecodeError
from .frames import Frames
from .sampling import uniform_indices

THUMBNAILS = 4  # frames shown for a view
THUMB_HEIGHT = 96  # px; the width keeps the frame's shape


def thumbnails(frames, count=THUMBNAILS, height=THUMB_HEIGHT):
    """Up to `count` frames spread evenly over `frames` (lazy frames with `take`), each scaled to `height` px high
    (width in proportion, at least 1 px): a list of `(position in frames, RGB uint8 (height, W, 3) array)`.

    Raises what reading the frames raises (e.g. `FileNotFoundError` when the file is gone, `CorruptVideoError`).
    """
    if count < 1 or height < 1:
        raise ValueError(f'count and height must be positive, got count={count}, height={height}')
    positions = sorted(set(uniform_indices(len(frames), min(count, len(frames))))) if len(frames) else []
    small = []
    for position, frame in zip(positions, frames.take(positions)):
        h, w = frame.shape[:2]
        image = av.VideoFrame.from_ndarray(frame, format='rgb24')
        scaled = image.reformat(width=max(1, round(w * height / h)), height=height, format='rgb24')
        small.append((position, scaled.to_ndarray()))
    return small


def png(rgb):
    """PNG file bytes of an RGB uint8 (H, W, 3) array, encoded by FFmpeg's PNG encoder (PyAV)."""
    codec = av.CodecContext.create('png', 'w')
    codec.width, codec.height, codec.pix_fmt = rgb.shape[1], rgb.shape[0], 'rgb24'
    frame = av.VideoFrame.from_ndarray(rgb, format='rgb24')
    return b''.join(bytes(packet) for packet in codec.encode(frame) + codec.encode(None))


def frames_html(frames, count=THUMBNAILS, height=THUMB_HEIGHT):
    """HTML for a `LazyFrames`: up to `count` thumbnails (PNG data URIs, `height` px high) over its repr. Frames that
    cannot be read (the file moved since) show why instead; the repr is always there."""
    caption = f'<div><code>{html.escape(repr(frames))}</code></div>'
    try:
        small = thumbnails(frames, count, height)
    except (OSError, VideoDecodeError) as e:  # the view is shown anyway; the notebook cell must not fail
        return f'<div><div>cannot draw thumbnails: {html.escape(f"{type(e).__name__}: {e}")}</div>{caption}</div>'
    times = frames.times
    images = ''.join(
        f'<img src="data:image/png;base64,{base64.b64encode(png(rgb)).decode("ascii")}" height="{height}" '
        f'alt="frame {p} ({float(times[p]):.3f} s)" title="frame {p} ({float(times[p]):.3f} s)">'
        for p, rgb in small)
    return f'<div><div style="display: flex; gap: 2px;">{images}</div>{caption}</div>'


def install_towhee_show():
    """Make Towhee's HTML table (`DataCollection.show()` in a notebook) draw a `LazyFrames` as `frames_html`.

    Idempotent. Does nothing where IPython is not installed: Towhee's HTML table needs it (and without it, shows
    only text tables), and importing that table without IPython would make Towhee pip-install it.
    """
    if importlib.util.find_spec('IPython') is None:
        return
    from towhee.utils import html_table

    if getattr(html_table._to_html_td, 'draws_lazy_frames', False):
        return
    towhee_cell = html_table._to_html_td

    def cell(data):
        if not isinstance(data, (list, tuple)) and isinstance(data, Frames):  # lazy frames, whatever their type
            return f'<td style="text-align: left; vertical-align: top;">{frames_html(data)}</td>'
        return towhee_cell(data)

    cell.draws_lazy_frames = True
    html_table._to_html_td = cell
