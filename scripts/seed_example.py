"""The seed example, exactly as a Towhee user writes it, on one video.

    python scripts/seed_example.py VIDEO

Exits 2 with the reason and the fix when pretrained weights are missing: labels from random weights would be
meaningless, so none are shown.
"""

import re
import sys

from towhee import DataCollection, ops, pipe


def main(path: str) -> int:
    try:
        p = (pipe.input('path')
               .map('path', 'frames', ops.video_decode.ffmpeg())
               .map('frames', ('labels', 'scores', 'features'),
                    ops.action_classification.timesformer(model_name='timesformer_k400_8x224'))
               .output('path', 'labels', 'scores', 'features'))
    except RuntimeError as e:
        # Towhee wraps the operator's WeightsUnavailableError (with its traceback) in a RuntimeError.
        reason = re.search(r'pretrained weights for .*?HF transformers directory\)\.', str(e), re.DOTALL)
        if reason is None:
            raise
        print(f'\nNo predictions: {reason.group(0)}', file=sys.stderr)
        return 2
    DataCollection(p(path)).show()
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
