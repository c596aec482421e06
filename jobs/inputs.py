"""Turn command-line inputs (files, directories, globs, list files, URLs) into an ordered list of unique videos.

Paths are made absolute (`os.path.abspath`: normalized, symlinks kept as the user named them) so that a resumed
run from another directory, a Ray worker with another working directory and the Milvus primary key all see the
same string. URLs are kept verbatim. A path that does not exist is kept: it is recorded as a failed video rather
than silently dropped.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

VIDEO_EXTENSIONS = frozenset({
    '.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.flv', '.wmv', '.mpg', '.mpeg', '.mts', '.m2ts', '.ts',
    '.3gp', '.3g2', '.ogv', '.vob', '.mxf', '.dv', '.asf', '.divx', '.f4v',
})
LIST_EXTENSIONS = frozenset({'.txt', '.lst', '.list'})
_GLOB_CHARS = frozenset('*?[')


def is_url(item: str) -> bool:
    return '://' in item


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _absolute(path: str, base: str | None = None) -> str:
    path = os.path.expanduser(path)
    if base is not None and not os.path.isabs(path):
        path = os.path.join(base, path)
    return os.path.abspath(path)


def _walk(directory: str) -> list[str]:
    """Video files under `directory`, recursively, in a stable (sorted) order; hidden folders are skipped."""
    found = []
    for parent, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        found.extend(os.path.join(parent, f) for f in sorted(files) if is_video_file(f))
    return found


def _read_list(path: str) -> list[str]:
    """One path or URL a line; blank lines and `#` comments skipped; relative paths are relative to the list file."""
    base = os.path.dirname(path)
    items = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith('#'):
                items.append(line if is_url(line) else _absolute(line, base))
    return items


def expand(items: Iterable[str], warn=None) -> list[str]:
    """Every video named by `items`, in order, each once. `warn(message)` hears about globs and folders that
    match nothing."""
    warn = warn or (lambda message: None)
    out: dict[str, None] = {}  # ordered set

    def add(item: str) -> None:
        out.setdefault(item, None)

    for item in items:
        item = os.fspath(item)
        if is_url(item):
            add(item)
        elif os.path.isdir(item):
            videos = _walk(item)
            if not videos:
                warn(f'no video files ({", ".join(sorted(VIDEO_EXTENSIONS))}) under {item}')
            for video in videos:
                add(_absolute(video))
        elif os.path.isfile(item) and Path(item).suffix.lower() in LIST_EXTENSIONS:
            for entry in _read_list(item):
                if not is_url(entry) and os.path.isdir(entry):
                    for video in _walk(entry):
                        add(_absolute(video))
                else:
                    add(entry)
        elif not os.path.exists(item) and _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(os.path.expanduser(item), recursive=True))
            # `clips/*.avi` takes what it names; `clips/*` or `**/*` takes only video files.
            suffix = Path(item).suffix
            explicit = bool(suffix) and not _GLOB_CHARS & set(suffix)
            if not matches:
                warn(f'no files match {item}')
            for match in matches:
                if os.path.isdir(match):
                    for video in _walk(match):
                        add(_absolute(video))
                elif explicit or is_video_file(match):
                    add(_absolute(match))
        else:
            add(_absolute(item))  # a file of any extension, or a missing path (recorded as failed)
    return list(out)
