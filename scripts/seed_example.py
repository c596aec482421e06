"""The seed example, exactly as a Towhee user writes it, on one video.

    python scripts/seed_example.py VIDEO [--weights FILE_OR_DIR]

Exits 2 with the reason and the fix when pretrained weights are missing: labels from random weights would be
meaningless, so none are shown. `--weights` passes `weights=` to the operator (for example the random weights
`bash scripts/demo.sh --random-weights` writes, to try the pipeline's plumbing without the release file).
"""

import argparse
import sys

from towhee import DataCollection, ops, pipe

from timesformer_video.checkpoints import resolve_weights
from timesformer_video.errors import WeightsUnavailableError
from timesformer_video.zoo import get_cfg

MODEL_NAME = 'timesformer_k400_8x224'
NO_WEIGHTS_HINT = ('To try the pipeline without pretrained weights (plumbing only: random weights, meaningless '
                   'labels): bash scripts/demo.sh --random-weights')


def main(path: str, weights: str | None = None) -> int:
    if weights is None:
        # The release file, fetched into torch's hub cache as the operator itself would (it then finds it there).
        # Checked here because Towhee 1.1.3 keeps only the text of an operator's constructor error: its node
        # formats the exception into a message and raises a bare RuntimeError with it after the `except` block.
        try:
            resolve_weights(get_cfg(MODEL_NAME))
        except WeightsUnavailableError as e:
            print(f'\nNo predictions: {e}\n{NO_WEIGHTS_HINT}', file=sys.stderr)
            return 2
    p = (pipe.input('path')
           .map('path', 'frames', ops.video_decode.ffmpeg())
           .map('frames', ('labels', 'scores', 'features'),
                ops.action_classification.timesformer(model_name=MODEL_NAME, weights=weights))
           .output('path', 'labels', 'scores', 'features'))
    DataCollection(p(path)).show()
    return 0


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('video')
    parser.add_argument('--weights', default=None, help='checkpoint file or directory (default: the release file)')
    args = parser.parse_args()
    sys.exit(main(args.video, args.weights))
