"""Random weights (`timesformer-videos random-weights`, `create_model`) see frame order and frame count.

The plumbing demo and several tests run on untrained models. With `cls_token`, `pos_embed` and `time_embed` at zero
(PyTorch's init of a zero-filled parameter), such a model could not tell frames apart by position: reversed or
shuffled frames, or one clip looped to 16 or 32 frames, gave the same feature within 2e-6, so neither the demo nor a
test on those weights could catch a frame-order or sampling bug. The reference here is the original release's
initialisation written out: truncated normal, std 0.02, for the embeddings.
"""

import numpy as np
import pytest
import torch
from reference import random_frames

from timesformer_video.classifier import ActionClassifier
from timesformer_video.jobs import operators

# A model of ViT-B's shape except width and depth (64 px crops: fast), saved the way users make random weights.
SMALL_CFG = {'name': 'timesformer_random_init_test', 'base': 'timesformer_k400_8x224', 'embed_dim': 96, 'depth': 4,
             'num_heads': 4, 'image_size': 64}
# What the tests that compare features allow (test_views_windows, test_jobs): a frame-order bug must move the
# feature far more than this.
FEATURE_TOL = 1e-5


@pytest.fixture(scope='module')
def random_weights(tmp_path_factory):
    return operators.save_random_weights(tmp_path_factory.mktemp('random') / 'random.pth', SMALL_CFG['name'],
                                         SMALL_CFG)


def test_the_embeddings_are_drawn_as_the_original_draws_them(random_weights):
    state = torch.load(random_weights, weights_only=True)
    for name in ('cls_token', 'pos_embed', 'time_embed'):
        values = state[name].flatten()
        assert values.abs().max() <= 0.04 + 1e-7, name  # truncated at two standard deviations
        # The std of a normal(0, 0.02) cut at +-2 std is 0.02 * 0.880 = 0.0176.
        assert values.std().item() == pytest.approx(0.0176, rel=0.25 if values.numel() < 1000 else 0.05), name
    assert state['blocks.0.temporal_fc.weight'].abs().max() > 0  # the first block's temporal attention is live
    assert not state['blocks.1.temporal_fc.weight'].any() and not state['blocks.1.temporal_fc.bias'].any()


def test_reversed_or_shuffled_frames_change_the_feature(random_weights):
    op = ActionClassifier(model_name=SMALL_CFG['name'], weights=random_weights, device='cpu', skip_preprocess=True)
    frames = random_frames(8, 72, 96)
    feature = op(frames)[2]
    for order in (np.arange(8)[::-1], np.random.default_rng(0).permutation(8)):
        moved = op(frames[order])[2]
        assert np.abs(moved - feature).max() > 100 * FEATURE_TOL


def test_a_clip_looped_to_16_or_32_frames_is_not_the_clip(random_weights):
    """A sampling bug that repeats the clip (0..7, 0..7) must show: with zero embeddings, temporal attention over the
    same set of frames and the CLS averaged over them gave the 8-frame feature again for 16 and 32 frames."""
    op = ActionClassifier(model_name=SMALL_CFG['name'], weights=random_weights, device='cpu', skip_preprocess=True)
    clip = random_frames(8, 72, 96, seed=1)
    features = [op(np.concatenate([clip] * loops))[2] for loops in (1, 2, 4)]  # 8, 16 and 32 frames
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert np.abs(features[a] - features[b]).max() > 100 * FEATURE_TOL
