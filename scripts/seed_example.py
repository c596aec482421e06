"""The seed example, exactly as a Towhee user writes it, on one video.

    python scripts/seed_example.py VIDEO [--weights FILE_OR_DIR]

Exits 2 with the reason and the fix when pretrained weights are missing: labels from random weights would be
meaningless, so none are shown. `--weights` passes `weights=` to the operator (for example the random weights
`bash scripts/demo.sh --random-weights` writes, to try the pipeline's plumbing without the release file).
"""

import argparse
import re
import sys

from towhee import DataCollection, ops, pipe

NO_WEIGHTS_HINT = ('To try the pipeline without pretrained weights (plumbing only: random weights, meaningless '
                   'labels): bash scripts/demo.sh --random-weights')


def main(path: str, weights: str | None = None) -> int:
    try:
        p = (pipe.input('path')
               .map('path', 'frames', ops.video_decode.ffmpeg())
               .map('frames', ('labels', 'scores', 'features'),
                    ops.action_classification.timesformer(model_name='timesformer_k400_8x224', weights=weights))
               .output('path', 'labels', 'scores', 'features'))
    except RuntimeError as e:
        # Towhee wraps the operator's WeightsUnavailableError (with its traceback) in a RuntimeError.
        reason = re.search(r'pretrained weights for .*?HF transformers directory\)\.', str(e), re.DOTALL)
        if reason is None:
            raise
        print(f'\nNo predictions: {reason.group(0)}\n{NO_WEIGHTS_HINT}', file=sys.stderr)
        return 2
    DataCollection(p(path)).show()
    return 0


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('video')
    parser.add_argument('--weights', default=None, help='checkpoint file or directory (default: the release file)')
    args = parser.parse_args()
    sys.exit(main(args.video, args.weights))
