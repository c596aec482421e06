"""Towhee operator `action-classification/timesformer`: frames in, (top-k labels, scores, 768-d feature) out.

Towhee glue only: the classifier (`timesformer_video.ActionClassifier`, installed by `scripts/setup.sh` with
`pip install -e .`) does the work; this class adds Towhee's `NNOperator` base and the node's device
(`.map(..., config={'device': 0})`). Arguments and behaviour: `ActionClassifier`'s docstring and README.md.
"""

import sys

from towhee.operator import NNOperator

try:
    from timesformer_video.classifier import ActionClassifier
except ModuleNotFoundError as e:  # the operator copied into Towhee's cache without the package installed
    if e.name != 'timesformer_video':
        raise
    raise ModuleNotFoundError(f'action-classification/timesformer needs the timesformer_video package, which is not '
                              f'installed in {sys.executable}: in a clone of this operator\'s repository run '
                              f'`bash scripts/setup.sh` (or `pip install -e .`), then retry', name=e.name) from e


class Timesformer(ActionClassifier, NNOperator):
    __doc__ = ActionClassifier.__doc__

    def __init__(self, *args, **kwargs):
        NNOperator.__init__(self)  # sets `_device_id` from the node's config (-1: not set)
        ActionClassifier.__init__(self, *args, node_device=self._device_id, **kwargs)
