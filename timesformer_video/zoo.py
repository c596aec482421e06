"""The model zoo: one record per released TimeSformer checkpoint.

Everything that must travel with a checkpoint (clip shape, preprocessing, labels, where the file lives and the
published accuracy) sits in one `ModelCfg`, so adding a model is adding one record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent

# PySlowFast's Kinetics/SSv2 defaults (DATA.MEAN / DATA.STD), which every released checkpoint was trained with.
_MEAN = (0.45, 0.45, 0.45)
_STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class ModelCfg:
    name: str
    dataset: str
    num_frames: int
    image_size: int
    # Frames between two sampled frames at the video's native rate in the paper's test protocol; None where the
    # checkpoint was trained on segment-based sampling (SSv2).
    sampling_rate: int | None
    labels_file: str
    file_name: str
    url: str
    sha256: str | None = None  # unknown for the Dropbox releases: only known hashes are checked
    channel_order: str = 'RGB'  # SSv2 was trained on OpenCV-decoded (BGR) frames
    mean: tuple[float, float, float] = _MEAN
    std: tuple[float, float, float] = _STD
    metrics: dict = field(default_factory=dict)  # published top-1 / top-5, 1 clip x 3 crops
    # ViT-B/16 for every release; smaller values make fast same-architecture models for tests.
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 16

    @property
    def labels(self) -> list[str]:
        return load_labels(self.labels_file)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _labels_path(file_name: str) -> Path:
    """A bundled list's name -> its file in the package; any other name -> that path (`~` expanded)."""
    return HERE / 'labels' / file_name if file_name in _BUNDLED else Path(file_name).expanduser().absolute()


def _check_record(cfg: ModelCfg) -> None:
    """ValueError for a record no model can be built from."""
    if not isinstance(cfg.name, str) or not cfg.name:
        raise ValueError(f'a record needs a name (a non-empty string), got {cfg.name!r}')
    sizes = {k: getattr(cfg, k) for k in ('num_frames', 'image_size', 'patch_size', 'embed_dim', 'depth', 'num_heads')}
    bad = {k: v for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f'{cfg.name}: {", ".join(f"{k}={v!r}" for k, v in bad.items())}; these must be positive '
                         f'integers')
    if cfg.embed_dim % cfg.num_heads or cfg.image_size % cfg.patch_size:
        raise ValueError(f'{cfg.name}: embed_dim ({cfg.embed_dim}) must divide by num_heads ({cfg.num_heads}) and '
                         f'image_size ({cfg.image_size}) by patch_size ({cfg.patch_size})')
    if cfg.sampling_rate is not None and (not isinstance(cfg.sampling_rate, int) or cfg.sampling_rate < 1):
        raise ValueError(f'{cfg.name}: sampling_rate must be a positive integer or None, got {cfg.sampling_rate!r}')
    if cfg.channel_order not in ('RGB', 'BGR'):
        raise ValueError(f"{cfg.name}: channel_order must be 'RGB' or 'BGR', got {cfg.channel_order!r}")


@lru_cache(maxsize=None)
def load_labels(file_name: str) -> list[str]:
    """The class names of a bundled list (`kinetics_400.json`, ...) or of a JSON file, in class-index order."""
    with open(_labels_path(file_name), encoding='utf-8') as f:
        names = json.load(f)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f'{file_name}: expected a JSON list of class names')
    return names


def _dropbox(key: str, file_name: str) -> str:
    return f'https://www.dropbox.com/s/{key}/{file_name}?dl=1'


def _record(name, dataset, frames, size, rate, labels, file_name, key, top1, top5, **kw) -> ModelCfg:
    return ModelCfg(name=name, dataset=dataset, num_frames=frames, image_size=size, sampling_rate=rate,
                    labels_file=labels, file_name=file_name, url=_dropbox(key, file_name),
                    metrics={'top1': top1, 'top5': top5}, **kw)


_K400, _K600, _SSV2 = 'kinetics_400.json', 'kinetics_600.json', 'something_something_v2.json'
_BUNDLED = (_K400, _K600, _SSV2)  # label lists shipped in labels/

MODELS: dict[str, ModelCfg] = {cfg.name: cfg for cfg in [
    _record('timesformer_k400_8x224', 'Kinetics-400', 8, 224, 32, _K400,
            'TimeSformer_divST_8x32_224_K400.pyth', 'g5t24we9gl5yk88', 77.9, 93.2),
    _record('timesformer_k400_16x448', 'Kinetics-400', 16, 448, 16, _K400,
            'TimeSformer_divST_16x16_448_K400.pyth', '6f0x172lpqy3oxt', 79.6, 94.0),
    _record('timesformer_k400_96x224', 'Kinetics-400', 96, 224, 4, _K400,
            'TimeSformer_divST_96x4_224_K400.pyth', 'r1iuxahif3sgimo', 80.6, 94.7),
    _record('timesformer_k600_8x224', 'Kinetics-600', 8, 224, 32, _K600,
            'TimeSformer_divST_8x32_224_K600.pyth', '4h2qt41m2z3aqrb', 79.1, 94.4),
    _record('timesformer_k600_16x448', 'Kinetics-600', 16, 448, 16, _K600,
            'TimeSformer_divST_16x16_448_K600.pyth', 'ft1e92g2vhvxecv', 81.8, 95.8),
    _record('timesformer_k600_96x224', 'Kinetics-600', 96, 224, 4, _K600,
            'TimeSformer_divST_96x4_224_K600.pyth', '857rx6xeclxfhdg', 82.2, 95.6),
    _record('timesformer_ssv2_8x224', 'Something-Something-v2', 8, 224, None, _SSV2,
            'TimeSformer_divST_8_224_SSv2.pyth', 'tybhuml57y24wpm', 59.1, 85.6,
            channel_order='BGR'),
    _record('timesformer_ssv2_16x448', 'Something-Something-v2', 16, 448, None, _SSV2,
            'TimeSformer_divST_16_448_SSv2.pyth', '9t68uzk8w2fpfnv', 61.8, 86.9,
            channel_order='BGR'),
    _record('timesformer_ssv2_64x224', 'Something-Something-v2', 64, 224, None, _SSV2,
            'TimeSformer_divST_64_224_SSv2.pyth', '3f1rm2al8mhprwa', 62.0, 87.5,
            channel_order='BGR'),
]}


def register_model(cfg: ModelCfg) -> ModelCfg:
    """Add a record (a fine-tuned or smaller model) so `ActionClassifier(model_name=cfg.name)` finds it.

    `labels_file` is a path (absolute, or relative to the current directory) or the name of a bundled list
    (`kinetics_400.json`, `kinetics_600.json`, `something_something_v2.json`). Registering a name again replaces
    that record, except a released model's, which is refused: register a copy under another name.
    Raises ValueError for a labels file that is not found or not a JSON list of names.
    """
    if not isinstance(cfg, ModelCfg):
        raise TypeError(f'register_model takes a ModelCfg (dataclasses.replace(get_cfg(...), name=..., ...)), not a '
                        f'{type(cfg).__name__}')
    _check_record(cfg)
    if cfg.name in _RELEASED and cfg != _RELEASED[cfg.name]:
        raise ValueError(f'{cfg.name!r} is a released model; its record cannot be replaced. Register your record '
                         f'under another name (dataclasses.replace(get_cfg({cfg.name!r}), name=..., ...))')
    labels = _labels_path(cfg.labels_file)
    if not labels.is_file():
        raise ValueError(f'labels_file {cfg.labels_file!r} of {cfg.name!r} not found (looked at {labels}); give a '
                         f'path to a JSON list of class names, or one of the bundled lists: {", ".join(_BUNDLED)}')
    if cfg.labels_file not in _BUNDLED:
        cfg = replace(cfg, labels_file=str(labels))  # a relative path means the current directory's, now
    load_labels.cache_clear()  # the file may have changed since it was last read
    try:
        names = load_labels(cfg.labels_file)
    except (ValueError, TypeError) as e:
        raise ValueError(f'labels_file {labels} is not a JSON list of class names: {e}') from None
    if not names:
        raise ValueError(f'labels_file {labels} lists no class names')
    MODELS[cfg.name] = cfg
    return cfg


def supported_model_names() -> list[str]:
    """Every registered model name: the releases first, then records added with `register_model`."""
    return list(MODELS)


def get_cfg(model_name: str) -> ModelCfg:
    """The record named `model_name` (`supported_model_names()`); ValueError listing the names if there is none."""
    try:
        return MODELS[model_name]
    except KeyError:
        raise ValueError(f'unknown model_name {model_name!r}; supported: {", ".join(MODELS)}') from None

_RELEASED = dict(MODELS)  # the released records, which register_model does not let anyone replace
