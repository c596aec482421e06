"""Turn command-line inputs (files, directories, globs, list files, URLs) into an ordered list of unique videos.

Paths are made absolute (`os.path.abspath`: normalized, symlinks kept as the user named them) so that a resumed
run from another directory, a Ray worker with another working directory and the Milvus primary key all see the
same string. URLs are kept verbatim. A path that does not exist is kept: it is recorded as a failed video rather
than silently dropped. Each is returned in its stored form (`paths.stored`: a name that is not UTF-8 becomes its
`file:` URI), which `paths.os_path` turns back into the name to open.

Each real file is one input: files are told apart by (device, inode), so a symlink or hard link to a file already
named, and a symlink loop in a folder (`ln -s . clips/loop`), add nothing; the first name found is kept, or a later
one without symlinks in it. Folders are walked following symlinks, each real folder once.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .checks import is_url
from .errors import ListFileError
from .paths import stored

VIDEO_EXTENSIONS = frozenset({
    '.mp4', '.m4v', '.mov', '.avi', '.mkv', '.webm', '.flv', '.wmv', '.mpg', '.mpeg', '.mts', '.m2ts', '.ts',
    '.3gp', '.3g2', '.ogv', '.vob', '.mxf', '.dv', '.asf', '.divx', '.f4v',
})
LIST_EXTENSIONS = frozenset({'.txt', '.lst', '.list'})
_GLOB_CHARS = frozenset('*?[')


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _absolute(path: str, base: str | None = None) -> str:
    path = os.path.expanduser(path)
    if base is not None and not os.path.isabs(path):
        path = os.path.join(base, path)
    return os.path.abspath(path)


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file `path` names after following symlinks; None when it does not exist, or when the
    file system reports no inode numbers (0, as some network and FUSE file systems do)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if st.st_ino else None


def _folder_key(path: str):
    """What tells real folders apart: (device, inode), or the resolved path where there are no inode numbers;
    None when `path` is not there."""
    if not os.path.exists(path):
        return None
    return _identity(path) or os.path.realpath(path)


def _via_symlink(path: str) -> bool:
    return os.path.realpath(path) != path


def _walk(directory: str) -> list[str]:
    """Video files under `directory`, recursively: a folder's files (sorted), then its subfolders (sorted), hidden
    folders skipped. Symlinks are followed, but each real folder is entered once, so a loop ends."""
    found = []
    entered: set = set()  # _folder_key of each folder entered
    stack = [directory]
    while stack:
        folder = stack.pop()
        key = _folder_key(folder)
        if key is None or key in entered:
            continue
        entered.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda entry: entry.name)
        except OSError:
            continue  # unreadable (permissions) or gone: nothing under it can be read either
        subfolders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows symlinks; a broken link is not a folder
            except OSError:
                is_dir = False
            if is_dir:
                if not entry.name.startswith('.'):
                    subfolders.append(entry.path)
            elif is_video_file(entry.name):
                found.append(entry.path)
        stack.extend(reversed(subfolders))
    return found


def _entries(directory: str, hidden: bool) -> list[tuple[str, ...]]:
    """Every file and folder under `directory` as path components relative to it (hidden ones only if `hidden`),
    following symlinks but entering each real folder once."""
    found: list[tuple[str, ...]] = []
    entered: set = set()  # _folder_key of each folder entered
    stack: list[tuple[str, ...]] = [()]
    while stack:
        relative = stack.pop()
        key = _folder_key(os.path.join(directory, *relative))
        if key is None or key in entered:
            continue
        entered.add(key)
        try:
            with os.scandir(os.path.join(directory, *relative)) as it:
                entries = sorted(it, key=lambda entry: entry.name)
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith('.') and not hidden:
                continue
            found.append((*relative, entry.name))
            try:
                if entry.is_dir():
                    subfolders.append((*relative, entry.name))
            except OSError:
                pass
        stack.extend(reversed(subfolders))
    return found


def _matches(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Glob matching by path component: `**` is any number of folders (none included), other components are
    fnmatch patterns of one name, and a hidden name matches only a pattern that starts with a dot."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == '**':
        for i in range(len(parts) + 1):
            if _matches(parts[i:], rest):
                return True
            if i < len(parts) and parts[i].startswith('.'):
                return False  # `**` does not go through hidden folders
        return False
    return (bool(parts) and (not parts[0].startswith('.') or head.startswith('.'))
            and fnmatch.fnmatchcase(parts[0], head) and _matches(parts[1:], rest))


def _glob(pattern: str) -> list[str]:
    """`glob.glob(pattern, recursive=True)`, sorted, except that `**` follows each real folder once: glob's own
    `**` follows symlinks into loops without end (two loops in one folder: 2^40 paths)."""
    pattern = os.path.expanduser(pattern)
    components = pattern.split(os.sep)
    if '**' not in components:
        return sorted(glob.glob(pattern))  # as deep as the pattern, no deeper: a loop cannot run away
    folders_only = components[-1] == ''  # `clips/**/`: folders, named with a trailing separator
    if folders_only:
        components = components[:-1]
    first = components.index('**')
    prefix, rest = os.sep.join(components[:first]), tuple(components[first:])
    hidden = any(part.startswith('.') for part in rest)
    bases = [prefix] if prefix and not _GLOB_CHARS & set(prefix) else glob.glob(prefix) if prefix else ['']
    found = []
    for base in bases:
        root = base or os.curdir
        if not os.path.isdir(root):
            continue
        if _matches((), rest) and base:
            found.append(os.path.join(base, ''))  # `dir/**` names dir itself, as glob does
        for parts in _entries(root, hidden):
            if _matches(parts, rest):
                path = os.path.join(base, *parts)
                if not folders_only:
                    found.append(path)
                elif os.path.isdir(path):
                    found.append(os.path.join(path, ''))
    return sorted(found)


_LINE_BREAK = re.compile('\r\n|\r|\n')  # what editors write; not str.splitlines(), whose breaks (\x0c,
# \x1c, \u2028...) may be part of a file name
_BOMS = ((b'\xef\xbb\xbf', 'utf-8'), (b'\xff\xfe', 'utf-16-le'), (b'\xfe\xff', 'utf-16-be'))


def _decode_list(path: str) -> str:
    """A list file's text: UTF-8 (names that are not valid UTF-8 kept byte for byte, as `os.fsdecode` does), or
    UTF-8/UTF-16 with a byte-order mark (Windows editors)."""
    with open(path, 'rb') as f:
        data = f.read()
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as e:
                raise ListFileError(f'list file {path} starts with a {encoding} byte-order mark but is not '
                                    f'{encoding} ({e}); save it as UTF-8') from None
    return data.decode('utf-8', 'surrogateescape')


def _read_list(path: str) -> list[str]:
    """One path or URL a line, as editors write them: any line ending (LF, CRLF, CR), an optional byte-order mark,
    spaces or tabs around a name, a name in double quotes (Windows "Copy as path"). Blank lines and lines starting
    with `#` are skipped; a line naming an existing file exactly as written is taken as written. Relative paths are
    relative to the list file."""
    base = os.path.dirname(os.path.abspath(path))
    items = []
    for raw in _LINE_BREAK.split(_decode_list(path)):
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        if is_url(line):
            items.append(line)
            continue
        exact = _absolute(raw, base)
        if raw != line and os.path.lexists(exact):
            items.append(exact)  # a name that really starts or ends with a space
            continue
        if len(line) >= 2 and line[0] == line[-1] == '"' and not os.path.lexists(_absolute(line, base)):
            line = line[1:-1]
        items.append(_absolute(line, base))
    return items


def expand(items: Iterable[str], warn=None) -> list[str]:
    """Every video named by `items`, in order, each real file once (under the first name found, or a later name
    without symlinks in it), in the stored form (`paths.stored`). `warn(message)` hears about globs and folders that
    match nothing."""
    warn = warn or (lambda message: None)
    out: list[str] = []
    named: dict[str | tuple[int, int], int] = {}  # a URL or missing path, or a file's (device, inode) -> its place

    def add(item: str) -> None:
        key = (None if is_url(item) else _identity(item)) or item
        place = named.get(key)
        if place is None:
            named[key] = len(out)
            out.append(item)
        elif isinstance(key, tuple) and _via_symlink(out[place]) and not _via_symlink(item):
            out[place] = item  # the same file under a name without symlinks: a name that stays when links change

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
            matches = _glob(item)
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
    return [stored(path) for path in out]
