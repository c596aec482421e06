"""How the job stores a video's path: text that every place it is written can hold, and that opens the same file.

A POSIX file name is bytes. Python reads a name that is not UTF-8 with `surrogateescape` (`'caf\\udce9.mp4'` for
the Latin-1 name `b'caf\\xe9.mp4'`), and that string cannot be written as UTF-8, which Parquet, JSON and Milvus
need. So the job keeps every path in one stored form, used wherever a path is written or compared (the output, the
sidecar's chunks, resuming, the Milvus primary key and `path` field):

- a path or URL that is valid UTF-8 (nearly all): as it is, with any character (spaces, tabs, newlines, emoji);
- a local path that is not: its `file:` URI (RFC 8089, as `pathlib.Path.as_uri()` writes it, every byte outside
  unreserved ASCII percent-encoded): `/videos/caf\\xe9.mp4` is stored as `file:///videos/caf%E9.mp4`;
- a URL that is not: the same URL with each such byte percent-encoded (`http://host/caf%E9.mp4`).

`os_path(stored)` gives back the name to open (the bytes through `os.fsdecode`, so `os.fsencode(os_path(s))` is the
file's name byte for byte); `display(stored)` is what messages show (`/videos/caf\\xe9.mp4`).
"""

from __future__ import annotations

import os
import pathlib
import re
import urllib.parse

from .checks import is_url

_FILE_URI = 'file://'
_SURROGATE = re.compile('[\ud800-\udfff]')


def _is_utf8(text: str) -> bool:
    return _SURROGATE.search(text) is None  # a str is UTF-8-encodable unless it holds a lone surrogate


def _escaped_byte(char: str) -> int:
    """The byte that `surrogateescape` read as `char` (U+DC80..U+DCFF); ValueError for another surrogate."""
    code = ord(char) - 0xDC00
    if not 0x80 <= code <= 0xFF:
        raise ValueError(f'U+{ord(char):04X} is not a byte read with surrogateescape')
    return code


def stored(path: str) -> str:
    """The stored form of `path` (an absolute path or a URL, as `inputs.expand` gives them); see the module doc.

    Raises ValueError for a string holding a surrogate that no file name can give (not U+DC80..U+DCFF)."""
    if _is_utf8(path):
        return path
    if is_url(path):  # a URL: its bytes that are not UTF-8, percent-encoded
        return _SURROGATE.sub(lambda m: f'%{_escaped_byte(m.group()):02X}', path)
    return pathlib.PurePosixPath(path).as_uri()  # encodes the name with os.fsencode


def os_path(stored_path: str) -> str:
    """The name to open for a stored path: the file name of a `file:` URI that `stored` made, else unchanged."""
    if not stored_path.startswith(_FILE_URI):
        return stored_path
    name = os.fsdecode(urllib.parse.unquote_to_bytes(stored_path[len(_FILE_URI):]))
    # Only the URIs `stored` writes: a file: URL a user gave (a UTF-8 name) stays what it was.
    return name if not _is_utf8(name) and stored(name) == stored_path else stored_path


def display(stored_path: str) -> str:
    """A readable form of a stored path for messages: a name that is not UTF-8 with its odd bytes as `\\xNN`."""
    return readable(os_path(stored_path))


def readable(text: str) -> str:
    """`text` with each byte that `surrogateescape` kept shown as `\\xNN` (any other lone surrogate as `\\uXXXX`):
    text that UTF-8 can write, for messages and the `error` column."""
    def escape(match):
        code = ord(match.group())
        return f'\\x{code - 0xDC00:02x}' if 0xDC80 <= code <= 0xDCFF else f'\\u{code:04x}'
    return _SURROGATE.sub(escape, text)
