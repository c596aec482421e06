"""An HTML page of moment search hits: per hit, its time range and a strip of thumbnails of its frames.

The page is one self-contained file: thumbnails are JPEGs embedded as `data:` URIs, so it can be mailed or moved
without the videos. Frames are decoded lazily (only the ones shown) from each hit's `[start_ms, end_ms)`.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .moments import format_time
from .operators import build_decoder
from .paths import display, os_path

THUMBNAILS = 6  # frames per hit, spread evenly over its range
THUMB_HEIGHT = 96  # px


def thumbnails(path: str, start_ms: int, end_ms: int, count: int = THUMBNAILS,
               height: int = THUMB_HEIGHT) -> list[bytes]:
    """JPEG bytes of `count` frames spread evenly over `[start_ms, end_ms)` of `path` (fewer if it has fewer),
    each scaled to `height` px high. The frames are those shown at `start_ms / 1000 <= t < end_ms / 1000` s on their
    exact times, as the index chose a window's (`timing.py`; `n / 1000` reaches the decoder as the exact decimal).
    Raises the decoder's errors (e.g. the file is gone; `TimeRangeError` when the range holds no frame)."""
    from PIL import Image

    frames = build_decoder(start_ms / 1000, end_ms / 1000).frames(path)
    n = len(frames)
    picks = sorted({min(n - 1, (2 * i + 1) * n // (2 * count)) for i in range(count)})
    images = []
    for frame in frames.take(picks):
        image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
        width = max(1, round(image.width * height / image.height))
        buffer = io.BytesIO()
        image.convert('RGB').resize((width, height)).save(buffer, format='JPEG', quality=85)
        images.append(buffer.getvalue())
    return images


def map_thumbnails(op, target, path: str, start_ms: int, end_ms: int, height: int = THUMB_HEIGHT) -> list[bytes]:
    """JPEG bytes of the frames `op` takes from `[start_ms, end_ms)` of `path`, each `height` px high with the
    attention map of the clip's similarity to `target` (the query's embedding) drawn over it (`op.explain`,
    gradient method; docs/explain.md)."""
    from PIL import Image

    explanation = op.explain(build_decoder(start_ms / 1000, end_ms / 1000)(path), target=target)
    images = []
    for image in explanation.overlays(height):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format='JPEG', quality=85)
        images.append(buffer.getvalue())
    return images


def _map_strip(maps, hit: dict[str, Any], span: str) -> str:
    try:
        return ''.join(f'<img src="{_data_uri(jpeg)}" alt="attention map of {html.escape(span)}" '
                       f'height="{THUMB_HEIGHT}">' for jpeg in maps(hit))
    except Exception as e:  # noqa: BLE001 - one unreadable video does not lose the page
        return f'<p class="error">cannot draw the maps: {html.escape(f"{type(e).__name__}: {e}")}</p>'


def _data_uri(jpeg: bytes) -> str:
    return 'data:image/jpeg;base64,' + base64.b64encode(jpeg).decode('ascii')


def write_page(out: str | Path, query: str, hits: Sequence[dict[str, Any]], title: str = 'Moments',
               maps=None) -> Path:
    """Write the page for `hits` (as `moments.search_moments` returns them) of `query`; returns its path.

    `maps`: None, or hit -> JPEG bytes of its frames with their attention maps (`map_thumbnails`), shown as a
    second strip under each hit's thumbnails.

    A hit whose frames cannot be read (the video moved since indexing) shows why instead of thumbnails."""
    out = Path(out)
    sections = []
    for rank, hit in enumerate(hits, 1):
        span = f'{format_time(hit["start_ms"])} – {format_time(hit["end_ms"])}'
        try:
            strip = ''.join(f'<img src="{_data_uri(jpeg)}" alt="frame of {html.escape(span)}" height="{THUMB_HEIGHT}">'
                            for jpeg in thumbnails(os_path(hit['path']), hit['start_ms'], hit['end_ms']))
        except Exception as e:  # noqa: BLE001 - one unreadable video does not lose the page
            strip = f'<p class="error">cannot show frames: {html.escape(f"{type(e).__name__}: {e}")}</p>'
        sections.append(
            f'<section><h2>{rank}. {html.escape(display(hit["path"]))}</h2>'
            f'<p class="meta"><b>{html.escape(span)}</b> &middot; similarity {hit["distance"]:.4f} &middot; '
            f'top label {html.escape(str(hit["label"]))} ({hit["score"]:.3f})</p>'
            f'<div class="strip">{strip}</div>'
            + (f'<div class="strip maps">{_map_strip(maps, hit, span)}</div>' if maps is not None else '')
            + '</section>')
    body = '\n'.join(sections) or '<p>No moments found.</p>'
    page = f'''<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}: {html.escape(query)}</title>
<style>
body {{ font-family: sans-serif; margin: 16px; background: #fff; color: #222; }}
section {{ margin-bottom: 18px; }}
h2 {{ font-size: 15px; margin: 0 0 4px; word-break: break-all; }}
.meta {{ margin: 0 0 6px; font-size: 13px; }}
.strip {{ display: flex; gap: 4px; flex-wrap: wrap; }}
.maps {{ margin-top: 4px; }}
.error {{ color: #a00; }}
</style></head>
<body><h1 style="font-size: 18px">{html.escape(title)} like {html.escape(query)}</h1>
{body}
</body></html>
'''
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding='utf-8')
    return out
