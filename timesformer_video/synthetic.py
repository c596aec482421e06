"""Write deterministic synthetic test videos with PyAV.

Every frame is different (a moving box over a drifting gradient) and carries its own index as a row of
black/white blocks along the top edge, so a decoder that returns the wrong frame is caught by `read_index`.

    python scripts/make_video.py OUT.mp4 --seconds 10 --size 1280x720 --fps 25 --codec h264

The demo's sample video and the tests' videos come from here; its command line is `timesformer-videos make-video`
(`scripts/make_video.py`).
"""

import fractions
import pathlib

import av
import numpy as np

ENCODERS = {'h264': 'libx264', 'hevc': 'libx265', 'mpeg4': 'mpeg4', 'vp9': 'libvpx-vp9', 'ffv1': 'ffv1'}
INDEX_BITS = 12  # up to 4096 frames; enough for 60 s at 60 fps
# Frame durations (ms) cycled through for variable frame rate videos: irregular on purpose.
VFR_PATTERN_MS = (40, 40, 80, 20, 60, 33, 100, 27)


def frame_image(index, size, seed=0):
    """The RGB image of frame `index`: gradient + moving box + index code on the top edge."""
    width, height = size
    rng = np.random.default_rng(seed)
    tint = rng.integers(0, 256, 3)
    speed = rng.integers(2, 6, 2)
    x = np.arange(width) * 255 // max(width - 1, 1)
    y = np.arange(height) * 255 // max(height - 1, 1)
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = ((x + 5 * index + tint[0]) % 256)[None, :]
    img[..., 1] = ((y + 3 * index + tint[1]) % 256)[:, None]
    img[..., 2] = (tint[2] + 11 * index) % 256
    box = max(min(width, height) // 5, 4)
    bx = (speed[0] * index) % max(width - box, 1)
    by = height // 4 + (speed[1] * index) % max(height - height // 4 - box, 1)
    img[by:by + box, bx:bx + box] = 255 - img[by:by + box, bx:bx + box]
    code_h, code_w = _code_block(size)
    for bit in range(INDEX_BITS):
        img[:code_h, bit * code_w:(bit + 1) * code_w] = 255 if (index >> bit) & 1 else 0
    img[:code_h, INDEX_BITS * code_w:] = (255, 0, 0)  # red marker: shows where the coded top-right ends up
    return img


def _code_block(size):
    width, height = size
    return max(height // 10, 8), width // (INDEX_BITS + 1)


def read_index(img):
    """Recover the frame index drawn by `frame_image` from a decoded (coded-orientation) RGB image."""
    height, width = img.shape[:2]
    code_h, code_w = _code_block((width, height))
    index = 0
    for bit in range(INDEX_BITS):
        patch = img[code_h // 4:3 * code_h // 4, bit * code_w + code_w // 4:(bit + 1) * code_w - code_w // 4]
        if patch.mean() > 127:
            index |= 1 << bit
    return index


def frame_times_ms(n_frames, fps=25, vfr=False):
    """Presentation time (ms) of each frame the way `make_video` writes them."""
    if not vfr:
        return [round(i * 1000 / fps) for i in range(n_frames)]
    times, t = [], 0
    for i in range(n_frames):
        times.append(t)
        t += VFR_PATTERN_MS[i % len(VFR_PATTERN_MS)]
    return times


def make_video(path, *, seconds=None, n_frames=None, size=(320, 240), fps=25, codec='h264', gop=12,
               pix_fmt='yuv420p', bframes=True, vfr=False, rotate=None, sar=None, audio=False, faststart=False, seed=0):
    """Write a synthetic video and return its path.

    `rotate`: display-matrix rotation in degrees, counter-clockwise as PyAV's `VideoFrame.rotation` reads it back
    (phone portrait videos usually carry -90, the legacy `rotate=90` tag). `sar`: sample aspect ratio (num, den) for
    non-square pixels. `vfr`: frame durations follow `VFR_PATTERN_MS` (time base 1 ms). Odd sizes need a pix_fmt
    without chroma subsampling for H.264 (e.g. 'yuv444p'). `faststart`: MP4 index at the front (streamable; a
    truncated copy still opens).
    """
    if (seconds is None) == (n_frames is None):
        raise ValueError('give exactly one of seconds= or n_frames=')
    n_frames = int(round(seconds * fps)) if n_frames is None else int(n_frames)
    width, height = size
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {'movflags': 'faststart'} if faststart else {}
    with av.open(str(path), 'w', options=options) as container:
        encoder = ENCODERS.get(codec, codec)
        stream = container.add_stream(encoder, rate=fps, options=_encoder_options(codec, gop, bframes))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec != 'vp9':
            stream.codec_context.gop_size = gop
        if vfr:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
            stream.time_base = fractions.Fraction(1, 1000)
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = fractions.Fraction(*sar)
        if rotate:
            stream.set_display_rotation(rotate)
        audio_stream = container.add_stream('aac', rate=16000) if audio else None
        container.start_encoding()  # writes the header even when n_frames == 0 (a zero-frame test video)
        times = frame_times_ms(n_frames, fps, vfr)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, size, seed), format='rgb24')
            if vfr:
                frame.pts, frame.time_base = times[i], fractions.Fraction(1, 1000)
            else:
                frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            _write_tone(container, audio_stream, max(n_frames / fps, 1.0))  # >= 1 s: a zero-frame file still has data
    return path


def make_audio(path, *, seconds=2.0):
    """Write an audio-only file (a 440 Hz tone): a valid media file with no video stream."""
    path = pathlib.Path(path)
    with av.open(str(path), 'w') as container:
        _write_tone(container, container.add_stream('aac', rate=16000), seconds)
    return path


def _encoder_options(codec, gop, bframes):
    fixed_gop = f'keyint={gop}:min-keyint={gop}:scenecut=0:bframes={3 if bframes else 0}'
    if codec == 'h264':
        return {'preset': 'veryfast', 'x264-params': fixed_gop}
    if codec == 'hevc':
        return {'preset': 'ultrafast', 'x265-params': fixed_gop + ':log-level=error'}
    if codec == 'mpeg4':
        return {'bf': '2' if bframes else '0', 'qscale': '3'}
    if codec == 'vp9':
        return {'g': str(gop), 'deadline': 'realtime', 'cpu-used': '8', 'crf': '30', 'b': '0'}
    return {}


def _write_tone(container, stream, seconds):
    rate, chunk = stream.rate, 1024
    total = int(seconds * rate)
    for start in range(0, total, chunk):
        t = np.arange(start, min(start + chunk, total)) / rate
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format='fltp', layout='mono')
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
