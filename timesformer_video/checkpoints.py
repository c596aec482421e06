"""Finding, downloading and reading TimeSformer checkpoints in every released format.

`load_checkpoint` reads a file or directory safely (`weights_only=True` unless the user opts in),
`checkpoint_filter_fn` turns any known layout into the original release's parameter names, and
`resolve_weights` finds the released file in torch's hub cache or downloads it there.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pickle
import re
import time
import uuid
import zipfile
from pathlib import Path

import torch

from .errors import CheckpointError, DownloadHashError, DownloadStalledError, WeightsUnavailableError
from .zoo import ModelCfg

# Serve checkpoints from a mirror (or a loopback server in tests): `<base>/<release file name>`.
ENV_BASE_URL = 'TIMESFORMER_WEIGHTS_BASE_URL'
# Seconds a download may wait for the server (to connect, or for the next bytes) before it is given up.
ENV_READ_TIMEOUT = 'TIMESFORMER_DOWNLOAD_TIMEOUT'
READ_TIMEOUT_S = 60.0


# HF transformers names -> original names; the order matters only in that each rule is tried in turn.
_HF_RULES = [
    (r'^timesformer\.embeddings\.cls_token$', 'cls_token'),
    (r'^timesformer\.embeddings\.position_embeddings$', 'pos_embed'),
    (r'^timesformer\.embeddings\.time_embeddings$', 'time_embed'),
    (r'^timesformer\.embeddings\.patch_embeddings\.projection\.', 'patch_embed.proj.'),
    (r'^timesformer\.encoder\.layer\.(\d+)\.layernorm_before\.', r'blocks.\1.norm1.'),
    (r'^timesformer\.encoder\.layer\.(\d+)\.attention\.attention\.qkv\.', r'blocks.\1.attn.qkv.'),
    (r'^timesformer\.encoder\.layer\.(\d+)\.attention\.output\.dense\.', r'blocks.\1.attn.proj.'),
    (r'^timesformer\.encoder\.layer\.(\d+)\.temporal_layernorm\.', r'blocks.\1.temporal_norm1.'),
    (r'^timesformer\.encoder\.layer\.(\d+)\.temporal_attention\.attention\.qkv\.', r'blocks.\1.temporal_attn.qkv.'),
    (r'^timesformer\.encoder\.layer\.(\d+)\.temporal_attention\.output\.dense\.', r'blocks.\1.temporal_attn.proj.'),
    (r'^timesformer\.encoder\.layer\.(\d+)\.temporal_dense\.', r'blocks.\1.temporal_fc.'),
    (r'^timesformer\.encoder\.layer\.(\d+)\.layernorm_after\.', r'blocks.\1.norm2.'),
    (r'^timesformer\.encoder\.layer\.(\d+)\.intermediate\.dense\.', r'blocks.\1.mlp.fc1.'),
    (r'^timesformer\.encoder\.layer\.(\d+)\.output\.dense\.', r'blocks.\1.mlp.fc2.'),
    (r'^timesformer\.layernorm\.', 'norm.'),
    (r'^classifier\.', 'head.'),
]


def _hf_to_original(key: str) -> str:
    for pattern, repl in _HF_RULES:
        new, count = re.subn(pattern, repl, key)
        if count:
            return new
    return key


def _strip(sd: dict, prefix: str) -> dict:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def checkpoint_filter_fn(checkpoint: dict) -> tuple[dict[str, torch.Tensor], str]:
    """Unwrap and rename any known checkpoint layout to the original parameter names; returns (state dict, format)."""
    if 'model_state' in checkpoint:
        sd, fmt = checkpoint['model_state'], 'original TimeSformer release (model_state)'
    elif isinstance(checkpoint.get('state_dict'), dict):
        sd, fmt = checkpoint['state_dict'], 'towhee-models checkpoint (state_dict)'
    elif isinstance(checkpoint.get('model'), dict):
        sd, fmt = checkpoint['model'], 'towhee-models checkpoint (model)'
    else:
        sd, fmt = checkpoint, 'plain state dict'
    if not isinstance(sd, dict):
        raise CheckpointError(f'not a state dict ({fmt}): it holds a {type(sd).__name__} where parameter names '
                              f'mapped to tensors were expected')
    bad = [k for k, v in sd.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointError(f'not a state dict ({fmt}): expected parameter names mapped to tensors; {len(bad)} '
                              f'entries are not, e.g. {bad[0]!r} -> {type(sd[bad[0]]).__name__}')
    sd = _strip(_strip(sd, 'module.'), 'model.')
    if any(k.startswith(('timesformer.', 'classifier.')) for k in sd):
        sd, fmt = {_hf_to_original(k): v for k, v in sd.items()}, 'HF transformers (TimesformerForVideoClassification)'
    return sd, fmt


def _torch_load(path: Path, trust_checkpoint: bool) -> dict:
    is_zip = zipfile.is_zipfile(path)
    with open(path, 'rb') as f:
        if not is_zip and f.read(1) != b'\x80':  # neither torch's zip format nor a (legacy) pickle stream
            raise CheckpointError(f'{path} is not a readable PyTorch checkpoint (not a zip archive or pickle)')
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        # torch's weights-only unpickler refused the file: it names objects besides tensors, or it is no pickle
        # that unpickler can read. A zip checkpoint is disassembled (nothing runs) to tell which.
        unsafe = _unsafe_globals(path) if is_zip else None
        if unsafe == []:
            raise CheckpointError(f'{path} is not a readable PyTorch checkpoint ({str(e).splitlines()[0]})') from e
        if trust_checkpoint is not True:  # only True opts in, not a truthy value such as the string 'false'
            named = f' ({", ".join(unsafe[:5])})' if unsafe else ''
            raise CheckpointError(
                f'{path} holds Python objects besides tensors{named}, and reading them runs code from the file, '
                f'so it was not loaded. If you trust this file, pass trust_checkpoint=True to load it with '
                f'torch.load(weights_only=False).') from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f'{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})') from e
    try:
        return torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f'{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})') from e


def _unsafe_globals(path: Path) -> list[str] | None:
    """The classes and functions a zip checkpoint's pickle names beyond what `weights_only` allows (found by
    disassembling it: nothing runs); None when the file cannot be disassembled."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - a file torch cannot take apart: the caller's error stands
        return None


def _load_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f'{path} is not a readable safetensors file: {e}') from e


def load_checkpoint(path: str | os.PathLike, trust_checkpoint: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """Read a checkpoint file or an HF `save_pretrained` directory; returns (original-named state dict, format)."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in ('model.safetensors', 'pytorch_model.bin'):
            if (path / name).is_file():
                return load_checkpoint(path / name, trust_checkpoint)
        raise CheckpointError(f'{path} is a directory without model.safetensors or pytorch_model.bin '
                              f'(expected an HF transformers save_pretrained directory)')
    if not path.is_file():
        raise FileNotFoundError(f'weights file not found: {path}')
    raw = _load_safetensors(path) if path.suffix == '.safetensors' else _torch_load(path, trust_checkpoint)
    if not isinstance(raw, dict):
        raise CheckpointError(f'{path} holds a {type(raw).__name__}, not a state dict or checkpoint dict')
    try:
        return checkpoint_filter_fn(raw)
    except CheckpointError as e:
        raise CheckpointError(f'{path} is {e}') from None


def _preview(keys) -> str:
    keys = sorted(keys)
    return ', '.join(keys[:8]) + (f' ... ({len(keys)} in all)' if len(keys) > 8 else '')


def check_state_dict(sd: dict, expected: dict[str, torch.Size], fmt: str, source) -> None:
    """Strict: every key present, none extra, every shape equal -- or one error naming them all."""
    problems = []
    missing = expected.keys() - sd.keys()
    unexpected = sd.keys() - expected.keys()
    if missing:
        problems.append(f'missing keys: {_preview(missing)}')
    if unexpected:
        problems.append(f'unexpected keys: {_preview(unexpected)}')
    mismatched = [f'{k} {tuple(sd[k].shape)} vs model {tuple(expected[k])}'
                  for k in sorted(expected.keys() & sd.keys()) if tuple(sd[k].shape) != tuple(expected[k])]
    if mismatched:
        problems.append(f'shape mismatches: {"; ".join(mismatched[:8])}'
                        + (f' ... ({len(mismatched)} in all)' if len(mismatched) > 8 else ''))
    if problems:
        hint = ''
        theirs, ours = (sd['head.weight'].shape[0] if 'head.weight' in sd else None), expected['head.weight'][0]
        if theirs is not None and theirs != ours:
            hint = (f'. The checkpoint classifies {theirs} classes and the model record {ours} (its labels file): '
                    f'choose the record these weights were trained for (model_name, or a record whose labels_file '
                    f'lists the checkpoint\'s classes)')
        raise CheckpointError(f'{source} (detected format: {fmt}) does not fit the model: ' + ' | '.join(problems)
                              + hint)


def cache_path(cfg: ModelCfg) -> Path:
    return Path(torch.hub.get_dir()) / 'checkpoints' / cfg.file_name


def weights_url(cfg: ModelCfg) -> str:
    base = os.environ.get(ENV_BASE_URL)
    return f'{base.rstrip("/")}/{cfg.file_name}' if base else cfg.url


def _verify_archive(path: Path) -> None:
    """A cut-off download must never be cached: torch's zip checkpoints carry CRCs, safetensors a header length."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
        if bad is not None:
            raise CheckpointError(f'downloaded checkpoint is corrupt (bad CRC in {bad})')
        return
    with open(path, 'rb') as f:
        head = f.read(8)
    if len(head) == 8:
        header_len = int.from_bytes(head, 'little')
        if header_len + 8 <= path.stat().st_size:
            return  # a plausible safetensors file; its tensors are size-checked when loaded
    raise CheckpointError('downloaded file is not a complete PyTorch (zip) or safetensors checkpoint '
                          '(truncated download?)')


# A download's temporary file untouched this long was left by a killed process (SIGKILL skips the clean-up below).
STALE_PARTIAL_S = 3600


def remove_stale_partials(dst: Path) -> None:
    """Delete the temporary files (`<name>.<hex>.partial`, torch's `....partial.<hex>.partial`) of killed downloads
    of `dst`; those written to within STALE_PARTIAL_S may belong to a download running in another process."""
    for partial in dst.parent.glob(f'{glob.escape(dst.name)}.*.partial'):
        with contextlib.suppress(OSError):
            if time.time() - partial.stat().st_mtime > STALE_PARTIAL_S:
                partial.unlink()


def read_timeout_s() -> float:
    """The download read timeout: `TIMESFORMER_DOWNLOAD_TIMEOUT` seconds if set (a positive number), else 60."""
    text = os.environ.get(ENV_READ_TIMEOUT)
    if text is None:
        return READ_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not value > 0:
        raise ValueError(f'{ENV_READ_TIMEOUT}={text!r}: expected a positive number of seconds')
    return value


def _fetch(url: str, path: Path, sha256: str | None, progress: bool, timeout: float) -> None:
    """Stream `url` into `path` with a timeout on connecting and on every read, checking the hash prefix.

    torch.hub.download_url_to_file opens the URL without a timeout: a server that accepts the connection and
    then sends nothing blocks it forever. This is its loop with `urlopen(timeout=)`.
    Raises DownloadStalledError, DownloadHashError, or urllib's/OSError's errors.
    """
    import urllib.request

    from tqdm import tqdm

    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={'User-Agent': 'timesformer-operator'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(path, 'wb') as f:
            size = response.headers.get('Content-Length')
            with tqdm(total=int(size) if size and size.isdigit() else None, disable=not progress, unit='B',
                      unit_scale=True, unit_divisor=1024) as bar:
                while chunk := response.read(1 << 16):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except TimeoutError as e:  # socket.timeout: connect or read
        raise DownloadStalledError(f'no data from {url} for {timeout:g} s (read timeout); the server stalled. '
                                   f'Try again, use a mirror, or set {ENV_READ_TIMEOUT} to wait longer') from e
    if sha256 is not None and not digest.hexdigest().startswith(sha256):
        raise DownloadHashError(f'invalid hash value (expected "{sha256}", got "{digest.hexdigest()}")')


def download(url: str, dst: Path, sha256: str | None = None, progress: bool = True) -> Path:
    """Download to a temporary name beside `dst`, check hash and completeness, then rename: all or nothing.

    A connection that sends nothing for `read_timeout_s()` raises DownloadStalledError.
    """
    timeout = read_timeout_s()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f'{dst.name}.{uuid.uuid4().hex}.partial')
    try:
        _fetch(url, tmp, sha256, progress, timeout)
        _verify_archive(tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def resolve_weights(cfg: ModelCfg, progress: bool = True) -> Path:
    """The release file from torch's hub cache, downloaded there first if missing."""
    dst = cache_path(cfg)
    remove_stale_partials(dst)
    if dst.is_file():
        return dst
    url = weights_url(cfg)
    try:
        return download(url, dst, cfg.sha256, progress)
    except Exception as e:  # noqa: BLE001 - network errors come in many types; all mean the same here
        raise WeightsUnavailableError(
            f'pretrained weights for {cfg.name!r} are not cached and could not be downloaded '
            f'({type(e).__name__}: {e}).\n'
            f'  URL:   {url}\n'
            f'  cache: {dst}\n'
            f'Fix: download the file from the URL to the cache path, or set {ENV_BASE_URL} to a mirror, '
            f'or pass weights=<file or directory> (original .pyth, state dict, or HF transformers directory).'
        ) from e
