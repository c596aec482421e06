"""Shared fixtures: random-weight checkpoints, the classifiers made from them, and one HF reference model.

The reference is HF transformers' `TimesformerForVideoClassification`, an implementation independent of ours.
Every parameter is perturbed because HF's init leaves some at zero, and a zero hides bugs.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# The original -> HF key table, one line per parameter (kept in the repository so a plain clone runs the tests).
KEY_TABLE = Path(__file__).resolve().parent / 'data' / 'original_to_hf_keys.tsv'

# Parity with HF on full-size ViT-B (random weights, same frames): measured at most 2.4e-6 on features and 4.8e-7 on
# scores (tests/test_timesformer.py, -s prints each). The bounds leave about four times that, so a change like the
# ones that once moved scores by 6e-5 (time-embedding interpolation) or 8e-5 (GELU's tanh form) fails here.
PARITY_FEATURES = 1e-5
PARITY_SCORES = 2e-6


def hf_to_original_keys() -> dict[str, str]:
    """HF name -> original release name, from the reference key table (independent of checkpoints.py)."""
    table = {}
    for line in KEY_TABLE.read_text().splitlines():
        if '\t->\t' in line:
            original, hf = line.split('\t->\t')
            table[hf] = original
    return table


def make_hf_model(num_frames: int = 8, image_size: int = 224, seed: int = 0, num_labels: int = 400, **config):
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    torch.manual_seed(seed)
    cfg = TimesformerConfig(num_frames=num_frames, image_size=image_size, num_labels=num_labels, **config)
    model = TimesformerForVideoClassification(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        # Logits a few units apart, so the top-k scores are far from uniform and a small error shows in them.
        model.classifier.weight.normal_(0, 0.1)
    return model


def hf_model_like(hf_model, replaced: dict, **config):
    """HF's model built for `config` (e.g. num_frames=16) holding `hf_model`'s parameters, with those named in
    `replaced` ({state-dict key: tensor}) swapped for the given ones. Made on the meta device and given the tensors
    as they are (no random init to overwrite, no copy: share, don't modify); raises RuntimeError when a key or a
    shape does not fit."""
    from transformers import TimesformerForVideoClassification

    state = {**hf_model.state_dict(), **replaced}
    with torch.device('meta'):
        model = TimesformerForVideoClassification(hf_model.config.__class__(**{**hf_model.config.to_dict(), **config}))
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


@pytest.fixture(scope='session')
def hf_model():
    return make_hf_model()


FORMATS = ('hf_dir', 'pyth', 'plain', 'towhee_models', 'towhee_models_model', 'hf_safetensors', 'hf_bin')


def save_formats(hf_model, root: Path, formats=FORMATS) -> dict:
    """`hf_model`'s weights saved in each of `formats` under `root`: {format name: path}."""
    from safetensors.torch import save_file

    hf_sd = {k: v.contiguous() for k, v in hf_model.state_dict().items()}
    names = hf_to_original_keys()
    original = {names[k]: v for k, v in hf_sd.items()}  # 'model.' prefixed, as in the release
    plain = {k[len('model.'):]: v for k, v in original.items()}
    writers = {
        'hf_dir': lambda path: hf_model.save_pretrained(path),
        # As PySlowFast saves it: the config as a YAML string beside the state.
        'pyth': lambda path: torch.save({'epoch': 15, 'model_state': original, 'optimizer_state': {},
                                         'cfg': 'MODEL:\n  NUM_CLASSES: 400\n'}, path),
        'plain': lambda path: torch.save(plain, path),
        'towhee_models': lambda path: torch.save({'state_dict': {f'module.{k}': v for k, v in plain.items()}}, path),
        # the other key towhee-models saves under
        'towhee_models_model': lambda path: torch.save({'model': dict(plain), 'epoch': 3}, path),
        'hf_safetensors': lambda path: save_file(hf_sd, path),
        'hf_bin': lambda path: torch.save(hf_sd, path),
    }
    files = {'hf_dir': 'hf', 'pyth': 'TimeSformer_divST_8x32_224_K400.pyth', 'plain': 'plain.pth',
             'towhee_models': 'towhee_models.pth', 'towhee_models_model': 'towhee_models_model.pth',
             'hf_safetensors': 'hf.safetensors', 'hf_bin': 'pytorch_model.bin'}
    paths = {}
    for fmt in formats:
        paths[fmt] = root / files[fmt]
        writers[fmt](paths[fmt])
    return paths


@pytest.fixture(scope='session')
def checkpoints(hf_model, tmp_path_factory):
    """The full-size reference weights as the release .pyth, a plain state dict and HF safetensors (each 0.5 GB;
    every other format is tested on the small model, `tiny_checkpoints`)."""
    return save_formats(hf_model, tmp_path_factory.mktemp('checkpoints'), ('pyth', 'plain', 'hf_safetensors'))


@pytest.fixture(scope='session')
def tiny_hf_model(tiny_weights):
    """HF built with the TINY record's shape (8 frames, 64 px, 48-d, 2 blocks, 4 heads, 400 classes)."""
    return make_hf_model(image_size=64, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=192)


@pytest.fixture(scope='session')
def tiny_checkpoints(tiny_hf_model, tmp_path_factory):
    """`tiny_hf_model`'s weights in every supported format (load with `model_name=TINY`)."""
    return save_formats(tiny_hf_model, tmp_path_factory.mktemp('tiny_checkpoints'))


@pytest.fixture(scope='session')
def plain_op(checkpoints):
    """The full-size operator loaded from the plain state dict, shared by every test that only calls it."""
    from timesformer_video.classifier import ActionClassifier

    return ActionClassifier(weights=checkpoints['plain'], device='cpu')


TINY = 'timesformer_tiny_test'
# The TINY record as a --model-cfg JSON file writes it (`tiny_weights` registers the same shape in this process).
TINY_CFG = {'name': TINY, 'base': 'timesformer_k400_8x224', 'image_size': 64, 'embed_dim': 48, 'depth': 2,
            'num_heads': 4}
VIDEOS_PY = ROOT / 'scripts' / 'videos.py'


def videos_py(*args, cwd, env=None, timeout=300, **options) -> subprocess.CompletedProcess:
    """Run `scripts/videos.py ARGS` (the `timesformer-videos` command) with this venv's Python in `cwd`, as a user
    would; returns the finished process (text stdout/stderr). Python warnings are off (`env` entries override), so
    stderr holds the command's own messages. Raises subprocess.TimeoutExpired after `timeout` seconds."""
    return subprocess.run([sys.executable, str(VIDEOS_PY), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, 'PYTHONWARNINGS': 'ignore', **(env or {})}, **options)


@pytest.fixture(scope='session')
def tiny_weights(tmp_path_factory):
    """A small model of the same architecture (2 blocks, 48-d, 64 px crops, 400 classes) and its checkpoint path.

    For tests of plumbing, concurrency and errors, where the full ViT-B would only add minutes.
    Use: `ActionClassifier(model_name=TINY, weights=tiny_weights)`.
    """
    import dataclasses

    from timesformer_video.build import create_model
    from timesformer_video.zoo import get_cfg, register_model

    shape = {k: v for k, v in TINY_CFG.items() if k != 'base'}
    cfg = register_model(dataclasses.replace(get_cfg(TINY_CFG['base']), **shape))
    torch.manual_seed(1)
    model = create_model(cfg)
    path = tmp_path_factory.mktemp('tiny') / 'tiny.pth'
    torch.save({k: torch.randn_like(v) * 0.1 for k, v in model.state_dict().items()}, path)
    return path


def install_operators(env: dict) -> dict:
    """Place both operators in the Towhee cache `env['TOWHEE_HOME']`, as scripts/setup.sh does; returns `env`."""
    subprocess.run([sys.executable, str(ROOT / 'scripts' / 'install_operators.py')], env=env, check=True,
                   capture_output=True, timeout=60)
    return env


def run_until_first_chunk(command, cwd, parts: Path, limit_s: float = 240):
    """Start the batch job `command` and return its process once it has saved its first rows in a chunk of `parts`
    (the output's `.parts` folder): the moment to kill it mid-run."""
    import time

    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + limit_s
    import pyarrow.parquet as pq

    def saved_rows() -> int:  # rows in the chunks renamed into place (a chunk may hold no row: a batch of none)
        return sum(pq.ParquetFile(chunk).metadata.num_rows for chunk in parts.glob('chunk-*.parquet'))
    while not saved_rows():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, f'no chunk written within {limit_s} s'
        time.sleep(0.02)
    return process


def earlier_output_schema(signature: dict, dim: int = 48):
    """The Parquet schema the batch job wrote before whole videos had windows (no `start_ms`/`end_ms`), with the
    job's `signature` in its metadata, as that code saved it: for tests that read such an output."""
    import json

    import pyarrow as pa

    return pa.schema([
        pa.field('path', pa.string(), nullable=False), pa.field('model', pa.string()),
        pa.field('duration', pa.float64()), pa.field('labels', pa.list_(pa.string())),
        pa.field('scores', pa.list_(pa.float32())), pa.field('feature', pa.list_(pa.float32(), dim)),
        pa.field('decode_s', pa.float64()), pa.field('model_s', pa.float64()), pa.field('error', pa.string()),
    ], metadata={b'timesformer.job': json.dumps(signature).encode()})
