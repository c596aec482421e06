"""Batching, device selection, reduced precision and export (tiny model except where full-size equality matters).

Nothing here needs a GPU: CUDA paths are checked for their errors and device resolution only; their speed and
error are measured by benchmarks/model_speed.py.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PARITY_FEATURES, PARITY_SCORES, TINY, install_operators
from reference import hf_outputs, random_frames, reference_clip
from towhee.types import VideoFrame

from timesformer_video.build import check_precision, cpu_has_native_bf16, resolve_device
from timesformer_video.classifier import ActionClassifier

TOL = 1e-4
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def tiny_op(tiny_weights):
    return ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu')


def videos_of_different_sizes():
    """Different lengths, sizes and orientations, one given as VideoFrames: preprocessing makes them equal."""
    return [random_frames(30, 240, 320, seed=11),
            [VideoFrame(f, mode='RGB') for f in random_frames(9, 90, 70, seed=12)],
            random_frames(5, 64, 64, seed=13)]


def assert_same_result(got, want, atol=TOL):
    assert got[0] == want[0]
    assert np.abs(np.array(got[1]) - np.array(want[1])).max() < atol
    assert got[2].dtype == np.float32 and np.abs(got[2] - want[2]).max() < atol


# --- batch -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('num_crops', [1, 3])
def test_batch_equals_per_video_calls_within_1e4(tiny_weights, num_crops):
    op = ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu', num_crops=num_crops)
    videos = videos_of_different_sizes()
    results = op.batch(videos)
    assert len(results) == len(videos)
    for got, video in zip(results, videos):
        assert_same_result(got, op(video))


def test_batch_runs_one_forward_over_all_clips(tiny_op, monkeypatch):
    calls = []
    forward = tiny_op.forward
    monkeypatch.setattr(tiny_op, 'forward', lambda clips: calls.append(clips.shape) or forward(clips))
    tiny_op.batch(videos_of_different_sizes())
    assert calls == [(3, 3, 8, 64, 64)]


def test_batch_matches_hf_video_by_video(tiny_checkpoints, tiny_hf_model):
    """Batching is plumbing, not full-size numerics: the small same-architecture model against HF built alike."""
    op = ActionClassifier(model_name=TINY, weights=tiny_checkpoints['plain'], device='cpu')
    videos = [random_frames(16, 72, 96, seed=21), random_frames(8, 100, 58, seed=22)]
    for (labels, scores, features), video in zip(op.batch(videos), videos):
        probs, hf_feature = hf_outputs(tiny_hf_model, reference_clip(video, 8, 64))
        top = probs.topk(op.topk)
        assert labels == [op.labels[i] for i in top.indices.tolist()]
        assert np.abs(np.array(scores) - top.values.numpy()).max() < PARITY_SCORES
        assert np.abs(features - hf_feature.numpy()).max() < PARITY_FEATURES


def test_batch_validates_each_video_as_a_call_does(tiny_op):
    bad = random_frames(8, 64, 64)[..., :2]  # two channels
    with pytest.raises(ValueError) as call_error:
        tiny_op(bad)
    with pytest.raises(ValueError, match=r'^video 1: ') as batch_error:
        tiny_op.batch([random_frames(8, 64, 64), bad])
    assert str(call_error.value) in str(batch_error.value)
    with pytest.raises(TypeError, match=r'^video 0: '):
        tiny_op.batch([[object()]])


@pytest.mark.parametrize('videos, match', [
    (random_frames(8, 64, 64), r'of shape \(8, 64, 64, 3\): for one video call op\(frames\)'),
    ('video.mp4', 'must be a list of videos'),
    (None, 'must be a list of videos'),
])
def test_batch_refuses_what_is_not_a_list_of_videos(tiny_op, videos, match):
    with pytest.raises(TypeError, match=match):
        tiny_op.batch(videos)


def test_batch_of_nothing_and_of_a_5d_array(tiny_op):
    assert tiny_op.batch([]) == []
    stacked = np.stack([random_frames(8, 64, 80, seed=s) for s in range(2)])  # (2, T, H, W, 3)
    for got, video in zip(tiny_op.batch(stacked), stacked):
        assert_same_result(got, tiny_op(video))


def test_batch_of_unequal_lengths_with_skip_preprocess_says_why(tiny_weights):
    op = ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu', skip_preprocess=True)
    with pytest.raises(ValueError, match='same number of frames'):
        op.batch([random_frames(8, 64, 64), random_frames(6, 64, 64)])


# --- the folded temporal projection (model.py) --------------------------------------------------------------------

def test_folded_temporal_projection_changes_neither_outputs_nor_saved_weights(tiny_op):
    model = tiny_op.model
    assert all(block.temporal_out_weight is not None for block in model.blocks)  # the operator folds at load
    assert not any('temporal_out' in key for key in model.state_dict())  # checkpoints keep the original names
    clips = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        folded = model(clips)
        for block in model.blocks:
            block.unfold_temporal_projection()
        try:
            unfolded = model(clips)
        finally:
            model.fold_temporal_projections()
    assert (folded - unfolded).abs().max() < 1e-5


# --- device ------------------------------------------------------------------------------------------------------

def test_device_resolution(monkeypatch):
    assert resolve_device('cpu') == torch.device('cpu')
    assert resolve_device(-1) == torch.device('cpu')  # Towhee's "no device"
    assert resolve_device('cpu', node_device=0) == torch.device('cpu')  # an explicit device wins over the node's
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    assert resolve_device(None, node_device=1) == torch.device('cuda', 1)
    assert resolve_device(None, node_device=-1) == torch.device('cuda')  # node default: CUDA when present
    assert resolve_device('cuda:1') == torch.device('cuda', 1)
    assert resolve_device(0) == torch.device('cuda', 0)
    with pytest.raises(ValueError, match='has 2 CUDA device'):
        resolve_device('cuda:2')
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda'"):
        resolve_device('gpu0')


NODE_DEVICE_SCRIPT = textwrap.dedent('''
    import contextvars, dataclasses, json, sys
    import numpy as np
    from towhee import ops, pipe
    from timesformer_video.zoo import get_cfg, register_model

    weights, name = sys.argv[1], sys.argv[2]
    register_model(dataclasses.replace(get_cfg('timesformer_k400_8x224'), name=name, image_size=64, embed_dim=48,
                                       depth=2, num_heads=4))

    def run(device):
        op = ops.action_classification.timesformer(model_name=name, weights=weights)
        p = (pipe.input('frames').map('frames', ('labels', 'scores', 'features'), op, config={'device': device})
             .output('labels'))
        return p(np.zeros((8, 64, 64, 3), np.uint8)).get()[0]

    labels = run(-1)
    # Towhee 1.1.3's set_runtime_config has no try/finally: an operator constructor that raises leaves the node's
    # config={'device': 0} set in this thread's context, and every operator made here afterwards would ask for
    # cuda:0. A copied context keeps that leak inside it.
    try:
        contextvars.copy_context().run(run, 0)
        error = None
    except RuntimeError as e:
        error = str(e)
    print(json.dumps({'labels': labels, 'error': error}))
''')


@pytest.mark.skipif(torch.cuda.is_available(), reason='only meaningful where CUDA is absent')
def test_towhee_node_config_device_reaches_the_operator(tiny_weights, tmp_path):
    """Towhee hands `config={'device': N}` to `Operator.__init__`; -1 (its default) runs on the CPU. Through the
    operator Towhee loads from a fresh cache (TOWHEE_HOME), in a subprocess."""
    env = install_operators(dict(os.environ, TOWHEE_HOME=str(tmp_path / 'towhee')))
    out = subprocess.run([sys.executable, '-c', NODE_DEVICE_SCRIPT, str(tiny_weights), TINY], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(got['labels']) == 5
    assert re.search(r"device cuda:0 was asked for by the Towhee node's config=\{'device': 0\}", got['error'])


# --- precision ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('precision, device, match', [
    ('int4', 'cpu', "precision must be one of 'fp32', 'bf16', 'fp16', 'int8'"),
    ('FP32', 'cpu', 'precision must be one of'),
    ('fp16', 'cpu', "'fp16' is slower than fp32 on the CPU"),
    ('int8', 'cuda', "'int8' is dynamic quantization for the CPU"),
    ('bf16', 'mps', "supported on 'cpu' and 'cuda'"),
])
def test_unsupported_precision_is_a_clear_error(precision, device, match):
    with pytest.raises(ValueError, match=match):
        check_precision(precision, torch.device(device))


def test_bad_precision_fails_at_construction(tiny_weights):
    with pytest.raises(ValueError, match='precision must be one of'):
        ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu', precision='half')


def test_bf16_on_a_cpu_without_native_bf16_is_refused(monkeypatch):
    from timesformer_video import build

    monkeypatch.setattr(build, 'cpu_has_native_bf16', lambda: False)
    with pytest.raises(ValueError, match='needs a CPU with AVX512-BF16 or AMX'):
        check_precision('bf16', torch.device('cpu'))


def test_gpu_precisions_are_accepted_on_cuda():
    for precision in ('fp32', 'bf16', 'fp16'):
        assert check_precision(precision, torch.device('cuda', 1)) == precision


def _cosine(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_int8_quantizes_every_linear_and_stays_close_to_fp32(tiny_weights, tiny_op):
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    op = ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu', precision='int8')
    float_linears = sum(isinstance(m, torch.nn.Linear) for m in tiny_op.model.modules())
    # Quantized in place: no float copy of the model is kept.
    assert sum(isinstance(m, DynamicLinear) for m in op.model.modules()) == float_linears == 7 * 2 + 1  # per block 7
    assert not any(type(m) is torch.nn.Linear for m in op.model.modules())
    with pytest.raises(ValueError, match="precision='int8' quantized it in place"):
        op.save_model('onnx')
    for video in videos_of_different_sizes():
        labels, scores, features = op(video)
        ref = tiny_op(video)
        assert features.dtype == np.float32 and _cosine(features, ref[2]) > 0.99
        assert np.abs(np.array(scores) - np.array(ref[1])).max() < 1e-2


@pytest.mark.skipif(not cpu_has_native_bf16(), reason='this CPU has no native bf16')
def test_bf16_on_a_cpu_with_native_bf16_stays_close_to_fp32(tiny_weights, tiny_op):
    op = ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu', precision='bf16')
    video = random_frames(8, 64, 64, seed=3)
    labels, scores, features = op(video)
    assert features.dtype == np.float32 and _cosine(features, tiny_op(video)[2]) > 0.999


# --- export ------------------------------------------------------------------------------------------------------

def test_supported_formats_and_an_unknown_format(tiny_op, tmp_path):
    assert tiny_op.supported_formats == ['onnx', 'torchscript']
    with pytest.raises(ValueError, match='format must be one of onnx, torchscript'):
        tiny_op.save_model('tensorrt', tmp_path / 'x')


def _pytorch_outputs(op, clips):
    with torch.inference_mode():
        features = op.model.forward_features(clips)
        return op.model.forward_head(features).numpy(), features.numpy()


def test_onnx_export_runs_in_onnxruntime_equal_to_pytorch_within_1e4(tiny_op, tmp_path):
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    path = tiny_op.save_model('onnx', tmp_path / 'model.onnx')  # positional, as Towhee's Triton builder calls it
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert [i.name for i in session.get_inputs()] == ['clips']
    assert [o.name for o in session.get_outputs()] == ['logits', 'features']
    assert session.get_inputs()[0].shape[0] == 'batch'  # dynamic batch axis
    for batch in (1, 3):
        clips = torch.randn(batch, 3, 8, 64, 64, generator=torch.Generator().manual_seed(batch))
        logits, features = session.run(None, {'clips': clips.numpy()})
        ref_logits, ref_features = _pytorch_outputs(tiny_op, clips)
        assert logits.shape == (batch, 400) and features.shape == (batch, 48)
        assert np.abs(logits - ref_logits).max() < TOL
        assert np.abs(features - ref_features).max() < TOL


@pytest.mark.filterwarnings('ignore:.*torch.jit.load.*deprecated:FutureWarning')
def test_torchscript_export_equals_pytorch_within_1e4(tiny_op, tmp_path):
    path = tiny_op.save_model(format='torchscript', path=tmp_path / 'model.pt')
    scripted = torch.jit.load(str(path))
    for shape in [(1, 3, 8, 64, 64), (3, 3, 8, 64, 64), (2, 3, 16, 80, 80)]:  # other frame counts and sizes too
        clips = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[0]))
        with torch.inference_mode():
            logits, features = scripted(clips)
        ref_logits, ref_features = _pytorch_outputs(tiny_op, clips)
        assert np.abs(logits.numpy() - ref_logits).max() < TOL
        assert np.abs(features.numpy() - ref_features).max() < TOL


def test_save_model_default_path_is_under_saved(tiny_op, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tiny_op.save_model('torchscript')
    assert path.resolve() == (tmp_path / 'saved' / 'torchscript' / f'{TINY}.pt').resolve() and path.is_file()


# --- the builder -------------------------------------------------------------------------------------------------

def test_build_model_from_a_name_or_a_record_is_the_classifiers_model(tiny_weights, tiny_op):
    """`build_model` is the one path from a record to a ready model: the classifier's model is what it builds."""
    from timesformer_video.build import build_model
    from timesformer_video.zoo import get_cfg

    by_name = build_model(TINY, tiny_weights, device='cpu')
    by_record = build_model(get_cfg(TINY), tiny_weights, device='cpu')
    clips = torch.randn(2, 3, 8, 64, 64)
    with torch.inference_mode():
        expected = tiny_op.model(clips)
        assert torch.equal(by_name(clips), expected) and torch.equal(by_record(clips), expected)
    assert not by_name.training and not any(p.requires_grad for p in by_name.parameters())
    with pytest.raises(ValueError, match="'fp16' is slower than fp32 on the CPU"):
        build_model(TINY, tiny_weights, device='cpu', precision='fp16')
