"""Write a deterministic synthetic test video (each frame carries its index): `timesformer_video.synthetic`.

    python scripts/make_video.py OUT.mp4 --seconds 10 --size 1280x720 --fps 25 --codec h264

The same command as `timesformer-videos make-video` (see its --help).
"""

import sys

from timesformer_video.jobs.cli import main

if __name__ == '__main__':
    sys.exit(main(['make-video', *sys.argv[1:]]))
