"""Place our operators where Towhee finds them with no network: $TOWHEE_HOME/operators/<author>/<repo>/versions/main.

Towhee resolves `ops.action_classification.timesformer` and `ops.video_decode.ffmpeg` from that cache before it
tries the hub, so the seed pipeline runs offline exactly as a Towhee user writes it.
    python scripts/install_operators.py [--towhee-home DIR]
"""

import argparse
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (source directory, Towhee name, files that make the operator)
OPERATORS = [
    (ROOT, 'action-classification/timesformer', ['*.py', '*.json', 'requirements.txt', 'README.md']),
    (ROOT / 'video_decode', 'video-decode/ffmpeg', ['*.py', 'requirements.txt', 'README.md']),
]


def towhee_home() -> Path:
    return Path(os.path.expanduser(os.environ.get('TOWHEE_HOME', '~/.towhee')))


def install(home: Path | None = None) -> list[Path]:
    """Copy each operator into the cache, replacing what was there in one rename."""
    home = home or towhee_home()
    placed = []
    for source, name, patterns in OPERATORS:
        dest = home / 'operators' / name / 'versions' / 'main'
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix='.main-'))
        for pattern in patterns:
            for file in source.glob(pattern):
                shutil.copy2(file, staging / file.name)
        old = dest.with_name('.main-old')
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)
        staging.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
        placed.append(dest)
    return placed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--towhee-home', type=Path, default=None, help='default: $TOWHEE_HOME or ~/.towhee')
    for dest in install(parser.parse_args().towhee_home):
        print(f'installed {dest}')


if __name__ == '__main__':
    main()
