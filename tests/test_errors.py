"""Every bad argument, frame and checkpoint fails at once with a clear error (tiny model: these test plumbing)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY
from towhee.types import VideoFrame

from timesformer_video.classifier import ActionClassifier
from timesformer_video.errors import CheckpointError


@pytest.fixture(scope='module')
def op(tiny_weights):
    return ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu')


@pytest.fixture(scope='module')
def tiny_sd(tiny_weights):
    return torch.load(tiny_weights, weights_only=True)


def test_unknown_model_name_lists_the_zoo():
    with pytest.raises(ValueError, match='unknown model_name.*timesformer_k400_8x224'):
        ActionClassifier(model_name='timesformer_k400_8x225')


def test_supported_model_names_cover_the_releases():
    names = ActionClassifier.supported_model_names()
    for name in ['timesformer_k400_8x224', 'timesformer_k400_16x448', 'timesformer_k400_96x224',
                 'timesformer_k600_8x224', 'timesformer_ssv2_8x224']:
        assert name in names
    assert ActionClassifier.supported_model_names('onnx') == names  # every model exports to every format
    with pytest.raises(ValueError, match='format must be one of onnx, torchscript or None'):
        ActionClassifier.supported_model_names('tensorrt')


@pytest.mark.parametrize('topk', [0, -1, 401, 2.5, '3', True, None])
def test_bad_topk(topk, tiny_weights):
    with pytest.raises(ValueError, match='topk must be an integer in 1..400'):
        ActionClassifier(model_name=TINY, weights=tiny_weights, topk=topk)


@pytest.mark.parametrize('classmap', [['a'] * 399, {i: 'x' for i in range(1, 401)}, 'abseiling', 42])
def test_classmap_of_the_wrong_size_or_type(classmap, tiny_weights):
    with pytest.raises(ValueError, match='classmap'):
        ActionClassifier(model_name=TINY, weights=tiny_weights, classmap=classmap)


def test_classmap_replaces_the_labels(tiny_weights):
    names = [f'class {i}' for i in range(400)]
    op = ActionClassifier(model_name=TINY, weights=tiny_weights, classmap={i: n for i, n in enumerate(names)}, topk=400)
    labels, scores, _ = op(np.zeros((8, 64, 64, 3), np.uint8))
    assert sorted(labels) == sorted(names) and len(scores) == 400


@pytest.mark.skipif(torch.cuda.is_available(), reason='only meaningful where CUDA is absent')
def test_cuda_asked_for_without_cuda(tiny_weights):
    with pytest.raises(ValueError, match='CUDA is not available'):
        ActionClassifier(model_name=TINY, weights=tiny_weights, device='cuda')


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='weights file not found'):
        ActionClassifier(model_name=TINY, weights=tmp_path / 'nope.pth')


FRAME = np.zeros((64, 80, 3), np.uint8)


@pytest.mark.parametrize('frames, error, match', [
    ([], ValueError, 'no frames'),
    (np.zeros((0, 64, 64, 3), np.uint8), ValueError, 'no frames'),
    ([np.zeros((64, 64), np.uint8)] * 8, ValueError, r'expected \(H, W, 3\) RGB'),
    ([np.zeros((64, 64, 4), np.uint8)] * 8, ValueError, r'expected \(H, W, 3\) RGB'),
    ([np.zeros((64, 64, 3), np.float32)] * 8, ValueError, 'expected uint8'),
    ([VideoFrame(FRAME, mode='HSV')] * 8, ValueError, "mode 'HSV'"),
    ([np.zeros((0, 64, 3), np.uint8)] * 8, ValueError, 'empty'),
    ([[0, 1, 2]] * 8, TypeError, 'expected a towhee VideoFrame'),
    (42, TypeError, 'expected a list of frames'),
    ((f for f in [FRAME] * 8), TypeError, 'expected a list of frames'),
])
def test_bad_frames(op, frames, error, match):
    with pytest.raises(error, match=match):
        op(frames)


def test_frames_of_different_sizes_are_scaled_and_cropped_one_by_one(op):
    """A video that changes resolution mid-clip (a stream capture's switch, two clips joined): each frame is
    resized and cropped as a clip of its own size would be, the seed transform written out in tests/reference.py."""
    from reference import random_frames, reference_clip

    small, large = random_frames(4, 64, 80, seed=1), random_frames(4, 96, 72, seed=2)  # landscape, then portrait
    frames = list(small) + list(large)
    expected = torch.cat([reference_clip(f[None], None, 64) for f in frames], dim=1)  # (3, 8, 64, 64)
    assert (op.preprocess(frames) - expected).abs().max() < 1e-5
    labels, scores, features = op(frames)
    assert len(labels) == 5 and features.shape == (48,)


def test_single_frame_is_repeated_to_the_clip_length(op):
    labels, scores, features = op([FRAME])
    assert len(labels) == 5 and features.shape == (48,)


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


@pytest.mark.parametrize('edit, match', [
    (lambda sd: sd.pop('blocks.0.attn.qkv.weight'), r'missing keys: blocks\.0\.attn\.qkv\.weight'),
    (lambda sd: sd.update(extra=torch.zeros(1)), 'unexpected keys: extra'),
    (lambda sd: sd.update(head_weight=None) or sd.update({'head.weight': torch.zeros(10, 48)}),
     r'head\.weight \(10, 48\) vs model \(400, 48\)'),
])
def test_checkpoint_that_does_not_fit_names_the_keys_and_format(tiny_sd, tmp_path, edit, match):
    sd = {f'model.{k}': v for k, v in tiny_sd.items()}
    edit_sd = dict(tiny_sd)
    edit(edit_sd)
    edit_sd.pop('head_weight', None)
    path = _save({'model_state': {f'model.{k}': v for k, v in edit_sd.items()}}, tmp_path / 'bad.pyth')
    with pytest.raises(CheckpointError, match=match) as info:
        ActionClassifier(model_name=TINY, weights=path)
    assert 'original TimeSformer release (model_state)' in str(info.value)
    assert sd  # the unedited layout is the release's


def test_full_size_checkpoint_into_the_small_model_lists_the_mismatches(checkpoints):
    with pytest.raises(CheckpointError, match=r'HF transformers.*shape mismatches: blocks\.0\.'):
        ActionClassifier(model_name=TINY, weights=checkpoints['hf_safetensors'])


class Config:
    """Stands for the training config object some checkpoints carry."""


class RunsCode:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), 'w')


def test_checkpoint_with_python_objects_needs_opt_in(tiny_sd, tmp_path):
    path = _save({'model_state': tiny_sd, 'cfg': Config()}, tmp_path / 'with_cfg.pyth')
    with pytest.raises(CheckpointError, match='trust_checkpoint=True'):
        ActionClassifier(model_name=TINY, weights=path)
    op = ActionClassifier(model_name=TINY, weights=path, trust_checkpoint=True)
    assert op.model.head.weight.shape == (400, 48)


def test_pickle_that_runs_code_is_never_run_by_default(tiny_sd, tmp_path):
    marker = tmp_path / 'pwned'
    path = _save({'model_state': tiny_sd, 'evil': RunsCode(marker)}, tmp_path / 'evil.pth')
    with pytest.raises(CheckpointError, match='trust_checkpoint'):
        ActionClassifier(model_name=TINY, weights=path)
    assert not marker.exists()


@pytest.mark.parametrize('content, match', [
    (b'not a checkpoint at all\n', 'not a readable PyTorch checkpoint'),
    (None, 'not a readable PyTorch checkpoint'),  # a truncated real checkpoint
])
def test_files_that_are_not_checkpoints(tiny_weights, tmp_path, content, match):
    path = tmp_path / 'broken.pth'
    data = tiny_weights.read_bytes()
    path.write_bytes(content if content is not None else data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=match):
        ActionClassifier(model_name=TINY, weights=path)


def test_truncated_safetensors(tmp_path, tiny_sd):
    from safetensors.torch import save_file

    path = tmp_path / 'model.safetensors'
    save_file(tiny_sd, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match='not a readable safetensors file'):
        ActionClassifier(model_name=TINY, weights=path)


def test_directory_without_weights(tmp_path):
    (tmp_path / 'config.json').write_text('{}')
    with pytest.raises(CheckpointError, match='without model.safetensors or pytorch_model.bin'):
        ActionClassifier(model_name=TINY, weights=tmp_path)


def test_weights_dir_is_expanded(tiny_weights, monkeypatch, tmp_path):
    monkeypatch.setenv('HOME', str(tmp_path))
    os.link(tiny_weights, tmp_path / 'tiny.pth')
    assert ActionClassifier(model_name=TINY, weights='~/tiny.pth').model is not None


# --- the package's error types and the mistakes a newcomer makes ---------------------------------------------------

def test_every_error_of_the_package_shares_one_base_and_keeps_its_builtin_kind():
    from timesformer_video import errors
    from timesformer_video.jobs import errors as job_errors

    assert issubclass(errors.NotAVideoError, errors.TimesformerVideoError) and issubclass(errors.NotAVideoError,
                                                                                          ValueError)
    assert issubclass(errors.CheckpointError, errors.TimesformerVideoError)
    assert issubclass(errors.WeightsUnavailableError, RuntimeError)
    assert issubclass(job_errors.ReplicaStartError, errors.TimesformerVideoError)
    assert issubclass(job_errors.UsageError, errors.TimesformerVideoError)


def test_a_released_record_cannot_be_replaced_and_labels_files_are_checked(tmp_path, monkeypatch):
    import dataclasses
    import json

    from timesformer_video.zoo import get_cfg, register_model

    base = get_cfg('timesformer_k400_8x224')
    with pytest.raises(ValueError, match="'timesformer_k400_8x224' is a released model"):
        register_model(dataclasses.replace(base, num_frames=4))
    assert register_model(base) == base  # the same record again changes nothing
    with pytest.raises(ValueError, match=r"labels_file 'mine.json' of 'with_labels' not found .*kinetics_400.json"):
        register_model(dataclasses.replace(base, name='with_labels', labels_file='mine.json'))
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'mine.json').write_text(json.dumps([f'class {i}' for i in range(3)]))
    record = register_model(dataclasses.replace(base, name='with_labels', labels_file='mine.json'))
    assert record.labels_file == str(tmp_path / 'mine.json') and record.num_classes == 3
    (tmp_path / 'bad.json').write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match='is not a JSON list of class names'):
        register_model(dataclasses.replace(base, name='bad_labels', labels_file='bad.json'))


def test_run_index_says_it_takes_an_index_job(tmp_path):
    from timesformer_video.jobs.runner import run_index

    with pytest.raises(TypeError, match=r'run_index takes one IndexJob'):
        run_index([str(tmp_path)], str(tmp_path / 'r.parquet'))


def test_a_model_config_that_is_not_json_names_its_file(tmp_path):
    from timesformer_video.jobs.operators import read_model_cfg

    path = tmp_path / 'cfg.json'
    path.write_text("{'name': 'single quotes'}")
    with pytest.raises(ValueError, match=rf'{path}: not valid JSON .* expected an object such as'):
        read_model_cfg(path)


@pytest.mark.parametrize('device', ['meta', 'mps', 'cpu:1', -2, True])
def test_devices_the_model_cannot_run_on_are_refused(device):
    from timesformer_video.build import resolve_device

    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or a CUDA index"):
        resolve_device(device)


@pytest.mark.parametrize('fields, match', [
    (dict(name=''), 'a record needs a name'),
    (dict(name=None), 'a record needs a name'),
    (dict(depth=-1), 'depth=-1; these must be positive integers'),
    (dict(num_heads=5), 'embed_dim .* must divide by num_heads'),
    (dict(channel_order='rgb'), "channel_order must be 'RGB' or 'BGR'"),
    (dict(sampling_rate=0), 'sampling_rate must be a positive integer or None'),
])
def test_a_record_no_model_can_be_built_from_is_refused(fields, match):
    import dataclasses

    from timesformer_video.zoo import get_cfg, register_model

    with pytest.raises(ValueError, match=match):
        register_model(dataclasses.replace(get_cfg('timesformer_k400_8x224'), **{'name': 'bad_record', **fields}))


def test_a_labels_file_read_again_after_it_changed(tmp_path):
    import dataclasses
    import json

    from timesformer_video.zoo import get_cfg, register_model

    labels = tmp_path / 'labels.json'
    labels.write_text(json.dumps(['a', 'b']))
    record = dataclasses.replace(get_cfg('timesformer_k400_8x224'), name='changing', labels_file=str(labels))
    assert register_model(record).num_classes == 2
    labels.write_text(json.dumps(['a', 'b', 'c']))
    assert register_model(record).labels == ['a', 'b', 'c']


def test_merge_views_and_the_clip_transform_check_what_they_are_given():
    from timesformer_video.classifier import merge_views
    from timesformer_video.transform import ClipTransform

    with pytest.raises(ValueError, match=r'merge_views takes logits \(B, V, C\)'):
        merge_views(torch.zeros(3, 400), torch.zeros(3, 48))
    transform = ClipTransform('timesformer_k400_8x224')  # a name, as build_model takes
    assert transform.cfg.name == 'timesformer_k400_8x224'
    with pytest.raises(ValueError, match='skip_preprocess must be True or False'):
        ClipTransform('timesformer_k400_8x224', skip_preprocess='no')
    with pytest.raises(ValueError, match='count must be a positive number of frames'):
        transform.indices(0)
    with pytest.raises(ValueError, match=r'a clip is uint8 \(T, H, W, 3\) RGB'):
        transform.views(torch.zeros(8, 64, 64, 3))  # a float clip is refused, not divided by 255 again


def test_int8_builds_in_threads_leave_the_quantized_engine_as_it_was(tiny_weights):
    from concurrent.futures import ThreadPoolExecutor

    from timesformer_video.build import build_model

    before = torch.backends.quantized.engine
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: build_model(TINY, tiny_weights, device='cpu', precision='int8'), range(6)))
    assert torch.backends.quantized.engine == before


def test_weights_for_another_class_count_say_which_record_to_choose(tiny_weights, tmp_path):
    import dataclasses
    import json

    from timesformer_video.zoo import get_cfg, register_model

    labels = tmp_path / 'three.json'
    labels.write_text(json.dumps(['a', 'b', 'c']))
    register_model(dataclasses.replace(get_cfg(TINY), name='tiny_three', labels_file=str(labels)))
    with pytest.raises(CheckpointError, match='The checkpoint classifies 400 classes and the model record 3'):
        ActionClassifier(model_name='tiny_three', weights=tiny_weights, topk=3)
