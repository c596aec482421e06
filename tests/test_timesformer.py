"""The operator against HF transformers on the same random weights, through the full preprocessing path."""

import threading

import numpy as np
import pytest
import torch
from conftest import FORMATS, PARITY_FEATURES, PARITY_SCORES, TINY
from reference import hf_outputs, random_frames, reference_clip
from towhee.types import VideoFrame

from timesformer_video.classifier import ActionClassifier
from timesformer_video.transform import ClipTransform
from timesformer_video.zoo import get_cfg


def assert_matches_hf(op, hf_model, frames, num_frames=8, reference=None):
    """`reference`: HF's (probs, feature) for these frames when already computed (a shared forward)."""
    labels, scores, features = op(frames)
    probs, hf_feature = reference or hf_outputs(hf_model, reference_clip(np.asarray(frames), num_frames))
    top = probs.topk(op.topk)
    feature_diff = np.abs(features - hf_feature.numpy()).max()
    score_diff = np.abs(np.array(scores) - top.values.numpy()).max()
    print(f'max abs difference vs HF: features {feature_diff:.2e}, scores {score_diff:.2e}')  # shown with -s
    assert features.dtype == np.float32 and features.shape == (hf_feature.shape[0],)
    assert feature_diff < PARITY_FEATURES and score_diff < PARITY_SCORES, (feature_diff, score_diff)
    assert labels == [op.labels[i] for i in top.indices.tolist()]
    assert scores == sorted(scores, reverse=True)
    return labels, scores, features


@pytest.fixture(scope='module')
def format_frames():
    return [VideoFrame(f, mode='RGB') for f in random_frames(30, 240, 320, seed=1)]


@pytest.fixture(scope='module')
def hf_reference(hf_model, format_frames):
    """HF's output on `format_frames`: one reference forward shared by every checkpoint format."""
    return hf_outputs(hf_model, reference_clip(np.asarray(format_frames), 8))


def test_the_plain_checkpoint_matches_hf_through_the_full_path(plain_op, hf_model, format_frames, hf_reference):
    labels, scores, features = assert_matches_hf(plain_op, hf_model, format_frames, reference=hf_reference)
    assert len(labels) == len(scores) == 5
    assert all(label in plain_op.cfg.labels for label in labels)


def test_the_release_pyth_loads_the_same_weights_and_matches_hf(checkpoints, plain_op, format_frames,
                                                               hf_reference, hf_model):
    """The original release format at full size: bit-identical parameters to the plain state dict, and the whole
    path against HF again."""
    op = ActionClassifier(weights=checkpoints['pyth'], device='cpu')
    ours, reference = op.model.state_dict(), plain_op.model.state_dict()
    assert ours.keys() == reference.keys() and all(torch.equal(ours[k], reference[k]) for k in ours)
    assert_matches_hf(op, hf_model, format_frames, reference=hf_reference)


@pytest.fixture(scope='module')
def tiny_plain_op(tiny_checkpoints):
    return ActionClassifier(model_name=TINY, weights=tiny_checkpoints['plain'], device='cpu')


@pytest.mark.parametrize('fmt', FORMATS)
def test_every_checkpoint_format_loads_the_same_weights_and_matches_hf(fmt, tiny_checkpoints, tiny_plain_op,
                                                                       tiny_hf_model):
    """Each format, saved from HF's small same-architecture model (reading a format is key names and nesting, not
    model size), loads bit-identical parameters and gives HF's result through the whole path."""
    op = ActionClassifier(model_name=TINY, weights=tiny_checkpoints[fmt], device='cpu')
    ours, reference = op.model.state_dict(), tiny_plain_op.model.state_dict()
    assert ours.keys() == reference.keys()
    assert all(torch.equal(ours[k], reference[k]) for k in ours), fmt
    frames = random_frames(20, 72, 96, seed=1)
    labels, scores, features = op(frames)
    probs, hf_feature = hf_outputs(tiny_hf_model, reference_clip(frames, 8, 64))
    top = probs.topk(5)
    assert labels == [op.labels[i] for i in top.indices.tolist()]
    assert np.abs(features - hf_feature.numpy()).max() < PARITY_FEATURES
    assert np.abs(np.array(scores) - top.values.numpy()).max() < PARITY_SCORES


def test_kinetics_labels_are_the_400_names_in_index_order():
    import torchvision

    assert get_cfg('timesformer_k400_8x224').labels == list(torchvision.models._meta._KINETICS400_CATEGORIES)


def test_bgr_frames_and_a_single_array_give_the_rgb_result(tiny_plain_op, tiny_hf_model):
    """Input handling, not model size: the small same-architecture model against HF's."""
    op = tiny_plain_op
    rgb = random_frames(12, 202, 360, seed=2)
    reference = hf_outputs(tiny_hf_model, reference_clip(rgb, 8, 64))
    expected = assert_matches_hf(op, tiny_hf_model, rgb, reference=reference)  # one (T, H, W, 3) array
    bgr = [VideoFrame(np.ascontiguousarray(f[..., ::-1]), mode='BGR') for f in rgb]
    labels, scores, features = op(bgr)
    assert labels == expected[0]
    np.testing.assert_allclose(scores, expected[1], atol=1e-6)
    np.testing.assert_allclose(features, expected[2], atol=1e-6)


def test_sixteen_frames_into_the_8_frame_model_use_nearest_time_embedding(checkpoints, hf_model):
    """Reference: HF built for 16 frames, given the original's nearest-resized time embedding computed here."""
    from conftest import hf_model_like

    old = hf_model.timesformer.embeddings.time_embeddings.detach()
    src = [i * 8 // 16 for i in range(16)]  # nearest: floor(i * in / out)
    hf16 = hf_model_like(hf_model, {'timesformer.embeddings.time_embeddings': old[:, src]}, num_frames=16)
    op = ActionClassifier(weights=checkpoints['pyth'], skip_preprocess=True, device='cpu')
    frames = random_frames(16, 224, 224, seed=3)
    assert_matches_hf(op, hf16, frames, num_frames=None)


def test_larger_crop_uses_nearest_position_embedding(plain_op, hf_model):
    """A 288x288 clip (18x18 patches) against HF built for 288 with the nearest-resized grid computed here."""
    from conftest import hf_model_like

    pos = hf_model.timesformer.embeddings.position_embeddings.detach()
    grid = pos[0, 1:].reshape(14, 14, 768)
    src = [i * 14 // 18 for i in range(18)]
    new = torch.cat([pos[0, :1], grid[src][:, src].reshape(-1, 768)])[None]
    hf288 = hf_model_like(hf_model, {'timesformer.embeddings.position_embeddings': new}, image_size=288)
    clip = reference_clip(random_frames(8, 288, 288, seed=4), None, 288)
    with torch.inference_mode():
        features = plain_op.model.forward_features(clip[None])
        scores = plain_op.model.forward_head(features).softmax(-1)
        hidden = hf288.timesformer(clip.permute(1, 0, 2, 3)[None])[0][:, 0]
        ref_scores = hf288.classifier(hidden).softmax(-1)
    feature_diff, score_diff = (features - hidden).abs().max().item(), (scores - ref_scores).abs().max().item()
    print(f'288 px vs HF: features {feature_diff:.2e}, scores {score_diff:.2e}')
    assert feature_diff < PARITY_FEATURES and score_diff < PARITY_SCORES


@pytest.mark.parametrize('shape', [(30, 240, 320), (30, 360, 202), (5, 224, 224), (3, 17, 600)])
def test_preprocessing_matches_the_seed_transform_on_odd_sizes(shape):
    frames = random_frames(*shape, seed=5)
    ours = ClipTransform(get_cfg('timesformer_k400_8x224'))(list(frames))[0]  # the single view
    ref = reference_clip(frames, 8, 224)
    assert ours.shape == ref.shape == (3, 8, 224, 224)
    assert (ours - ref).abs().max() < 1e-5


def test_subsampling_reads_only_the_chosen_frames():
    class Counting(list):
        seen = set()

        def __getitem__(self, i):
            self.seen.add(i)
            return super().__getitem__(i)

    frames = Counting(random_frames(300, 8, 8))
    ClipTransform(get_cfg('timesformer_k400_8x224'))(frames)
    assert frames.seen == set(np.floor(np.linspace(0, 299, 8)).astype(int).tolist())


def test_concurrent_calls_on_one_instance_equal_serial_calls(tiny_weights):
    """Thread safety is not a matter of model size: the small same-architecture model (4 calls in 4 threads)."""
    op = ActionClassifier(model_name=TINY, weights=tiny_weights, device='cpu')
    clips = [random_frames(8, 120, 160, seed=s) for s in range(4)]
    serial = [op(c) for c in clips]
    results = [None] * len(clips)

    def work(i):
        results[i] = op(clips[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial):
        assert got[0] == want[0]
        np.testing.assert_allclose(got[1], want[1], atol=1e-6)
        np.testing.assert_allclose(got[2], want[2], atol=1e-6)
