"""How the batch job builds its classifier and decoder: a picklable recipe (`OperatorSpec`) and the builders.

An `OperatorSpec` is what a Ray worker on another machine rebuilds the same classifier from; `signature()` is what
a resumed run must match.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

from . import checks
from .checks import is_url

DEFAULT_MODEL = 'timesformer_k400_8x224'


@dataclasses.dataclass(frozen=True)
class OperatorSpec:
    """Everything needed to build the operator again in another process or on another machine.

    `model_cfg`: an extra zoo record (a fine-tuned or test-sized model), as in `--model-cfg FILE.json`:
    `{"name": ..., "base": <zoo name to start from>, <ModelCfg field>: value, ...}`.
    `options`: further keyword arguments of the operator that change results (`num_crops`, `sampling`,
    `precision`). `clip_batch`: videos per model forward (`op.batch`); 1 (`op(frames)` per video) keeps every
    result independent of how videos are grouped.
    """

    model_name: str = DEFAULT_MODEL
    weights: str | None = None
    topk: int = 5
    device: str | None = None
    trust_checkpoint: bool = False
    model_cfg: dict[str, Any] | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    clip_batch: int = 1

    @property
    def moments(self) -> bool:
        """Whether results are per window (`options` has `window`, seconds, and `stride`): one row per window."""
        return self.options.get('window') is not None

    def __post_init__(self):
        if not isinstance(self.options, dict):
            raise TypeError(f'options must be a dict of the classifier\'s keyword arguments, not '
                            f'{type(self.options).__name__}')
        own = sorted(set(self.options) & {'model_name', 'weights', 'topk', 'device', 'trust_checkpoint'})
        if own:
            raise ValueError(f'options {own} are OperatorSpec fields: give them as OperatorSpec({own[0]}=...)')
        if self.model_cfg is not None and not isinstance(self.model_cfg, dict):
            raise TypeError(f'model_cfg must be a dict (a record: read a file with read_model_cfg(path)), not '
                            f'{type(self.model_cfg).__name__}')
        checks.count('topk', self.topk)
        checks.count('clip_batch', self.clip_batch)
        if self.weights is not None and not os.fspath(self.weights):
            raise ValueError('weights is an empty path; give a checkpoint file or directory, or None for the release')
        if self.weights is not None and not is_url(os.fspath(self.weights)):
            # Absolute, so that a resumed run from elsewhere and a Ray worker (another cwd) read the same file.
            object.__setattr__(self, 'weights', os.path.abspath(os.path.expanduser(os.fspath(self.weights))))

    def signature(self) -> dict[str, Any]:
        """What determines the results (not the device or batching): a resumed run must match it.

        The weights by content (`weights_sha256`), not by path: without `weights`, the released file in torch's hub
        cache (so naming that file with --weights is the same weights), None while it is not downloaded. The
        operator options with the operator's defaults filled in, so `--num-crops 1` and no `--num-crops` agree.
        Raises `FileNotFoundError` when `weights` names nothing.
        """
        weights = self.weights
        if weights is None:
            if self.model_cfg is not None:
                register_model_cfg(self.model_cfg)
            from ..checkpoints import cache_path
            from ..zoo import get_cfg

            released = cache_path(get_cfg(self.model_name))
            weights = released if released.is_file() else None
        return {'model_name': self.model_name, 'weights_sha256': weights_sha256(weights), 'topk': self.topk,
                'model_cfg': self.model_cfg, 'options': {**operator_defaults(), **self.options}}


RESULT_OPTIONS = ('num_crops', 'sampling', 'precision')  # operator arguments that change the results


def operator_defaults() -> dict[str, Any]:
    """The classifier's default value of each of RESULT_OPTIONS, read from its signature."""
    from ..classifier import ActionClassifier

    parameters = inspect.signature(ActionClassifier.__init__).parameters
    return {name: parameters[name].default for name in RESULT_OPTIONS}


def _weights_file(path: Path) -> Path:
    """The file the operator reads for `path`: the file itself, or an HF directory's model file."""
    if path.is_dir():
        for name in ('model.safetensors', 'pytorch_model.bin'):  # the order checkpoints.load_checkpoint tries
            if (path / name).is_file():
                return path / name
    return path


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # keyed by size and mtime: a rewritten file is read again
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(weights: str | os.PathLike | None) -> str | None:
    """SHA-256 (hex) of the weights file (of the model file of an HF directory); None for None."""
    if weights is None:
        return None
    path = _weights_file(Path(weights))
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def read_model_cfg(path: str | Path) -> dict[str, Any]:
    with open(path, encoding='utf-8') as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as e:
            example = f'{{"name": "my_model", "base": "{DEFAULT_MODEL}", "labels_file": "labels.json"}}'
            raise ValueError(f'{path}: not valid JSON ({e}); expected an object such as {example}') from None
    if not isinstance(record, dict) or 'name' not in record:
        raise ValueError(f'{path}: expected a JSON object with at least "name" (and "base" plus ModelCfg fields)')
    labels = record.get('labels_file')
    if isinstance(labels, str) and not os.path.isabs(labels):
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), labels)
        if os.path.isfile(beside):  # else a label list shipped with the zoo (kinetics_400.json, ...)
            record['labels_file'] = beside
    return record


def register_model_cfg(record: dict[str, Any]):
    """Add `record` to the zoo: the `base` record with the given fields replaced."""
    from .. import zoo

    fields = {f.name for f in dataclasses.fields(zoo.ModelCfg)}
    overrides = {k: v for k, v in record.items() if k != 'base'}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f'model config has unknown fields {unknown}; known: "base" and {sorted(fields)}')
    for key in ('mean', 'std'):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    base = zoo.get_cfg(record.get('base', DEFAULT_MODEL))
    return zoo.register_model(dataclasses.replace(base, **overrides))


def build_classifier(spec: OperatorSpec):
    """The classifier for `spec`; raises its own errors (e.g. `WeightsUnavailableError`) unchanged."""
    from ..classifier import ActionClassifier

    if spec.model_cfg is not None:
        register_model_cfg(spec.model_cfg)
    return ActionClassifier(model_name=spec.model_name, topk=spec.topk, weights=spec.weights,
                               device=spec.device, trust_checkpoint=spec.trust_checkpoint, **spec.options)


def build_decoder(start: float | None = None, end: float | None = None):
    """Lazy decoding (no sampling): the operator picks its frames with `take`, so only those are decoded.
    `start`/`end` (seconds): only the frames shown in `[start, end)`."""
    from ..decode import VideoDecoder

    return VideoDecoder(start_time=start, end_time=end)


def save_random_weights(path: str | Path, model_name: str = DEFAULT_MODEL, model_cfg: dict[str, Any] | None = None,
                        seed: int = 0) -> Path:
    """A randomly initialised checkpoint (plain state dict) of the model's exact shape: for trying the pipeline
    and measuring speed where the released weights cannot be downloaded. Its predictions mean nothing."""
    import torch

    from ..build import create_model

    if model_cfg is not None:
        register_model_cfg(model_cfg)
    torch.manual_seed(seed)
    model = create_model(model_name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.partial')
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return path
