"""`op.explain`: space-time attention maps, against HF transformers on the same random weights.

The reference probabilities are HF's own: the spatial ones from `output_attentions=True`; the temporal ones, which
HF computes but does not return, by asking each layer's temporal attention for them too (a forward pre-hook sets its
`output_attentions`). The maps are then written out here as plain (1 + P*T)-square token matrices multiplied block
by block, from those probabilities and from `torch.autograd` on HF's graph: a formulation independent of
explain.py's row-vector one.
"""

import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_CFG, videos_py
from reference import random_frames, reference_clip

from timesformer_video import errors
from timesformer_video import model as model_module
from timesformer_video.classifier import ActionClassifier

CHROMIUM = shutil.which('chromium') or 'chromium'  # scripts/setup.sh installs it
T, SIZE, PATCH, GRID = 8, 64, 16, 4  # the TINY record: 8 frames, 64 px crops, 16 px patches
P = GRID * GRID
# Against HF (float32): attention probabilities measured up to 4.5e-8 apart (the bound is the 1e-5);
# relevance, relative to its largest value, 8e-8 (rollout) and 3.4e-7 (gradient maps).
PROBS_TOL = 1e-5
RELEVANCE_RTOL = 2e-6


@pytest.fixture(scope='module')
def op(tiny_checkpoints):
    return ActionClassifier(model_name=TINY, weights=tiny_checkpoints['hf_safetensors'], device='cpu')


@pytest.fixture(scope='module')
def frames():
    return random_frames(12, 72, 96, seed=3)


def hf_run(hf_model, frames):
    """HF on the reference clip of `frames`: (logits (C,), feature (D,), temporal [(P, heads, T, T)],
    spatial [(T, heads, 1+P, 1+P)]) per layer; the probabilities are the tensors HF's output depends on (so they
    can be differentiated; `heads_first` gives the layout `Explanation.attention` has)."""
    clip = reference_clip(frames, T, SIZE)
    temporal, handles = [], []
    for layer in hf_model.timesformer.encoder.layer:
        attention = layer.temporal_attention
        handles.append(attention.register_forward_pre_hook(
            lambda module, args, kwargs: (args, {**kwargs, 'output_attentions': True}), with_kwargs=True))
        handles.append(attention.register_forward_hook(lambda module, args, out: temporal.append(out[1])))
    try:
        out = hf_model.timesformer(clip.permute(1, 0, 2, 3)[None], output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()
    feature = out.last_hidden_state[0, 0]
    logits = hf_model.classifier(feature)
    return logits, feature, temporal, list(out.attentions)


def heads_first(probs):
    return [a.detach().transpose(0, 1) for a in probs]


def token(p, t):
    return 1 + p * T + t  # patch-major, frame-minor, after the class token (as HF and the original order them)


def full_matrices(temporal, spatial, class_self):
    """Head-mean (N, N) matrices of one block's two steps, N = 1 + P*T, as docs/explain.md defines them, from its
    probabilities `temporal` (P, heads, T, T) and `spatial` (T, heads, 1+P, 1+P)."""
    n = 1 + P * T
    a_t, a_s = temporal.mean(1).double(), spatial.mean(1).double()  # (P, T, T), (T, 1+P, 1+P)
    mt, ms = torch.zeros(n, n, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64)
    mt[0, 0] = class_self
    ms[0, 0] = a_s[:, 0, 0].mean()
    for t in range(T):
        for p in range(P):
            for s in range(T):
                mt[token(p, t), token(p, s)] = a_t[p, t, s]
            ms[0, token(p, t)] = a_s[t, 0, p + 1] / T
            ms[token(p, t), 0] = a_s[t, p + 1, 0]
            for q in range(P):
                ms[token(p, t), token(q, t)] = a_s[t, p + 1, q + 1]
    return mt, ms


def reference_relevance(temporal, spatial, keep, mix, class_self):
    """R = prod over blocks (last first) of (keep I + mix A_spatial)(keep I + mix A_temporal); the class token's row
    over the patch tokens, as (T, GRID, GRID)."""
    n = 1 + P * T
    eye = torch.eye(n, dtype=torch.float64)
    r = eye.clone()
    for a_t, a_s in zip(temporal, spatial):
        mt, ms = full_matrices(a_t, a_s, class_self)
        r = (keep * eye + mix * mt) @ r
        r = (keep * eye + mix * ms) @ r
    return r[0, 1:].reshape(P, T).T.reshape(T, GRID, GRID)


def assert_relevance_close(ours, reference):
    reference = reference.float().numpy()
    scale = np.abs(reference).max()
    assert scale > 0
    diff = np.abs(ours - reference).max() / scale
    print(f'relevance max relative difference vs HF: {diff:.1e}')
    assert diff < RELEVANCE_RTOL, diff


def test_attention_equals_hfs_probabilities_within_1e5(op, tiny_hf_model, frames):
    e = op.explain(frames)
    _, _, temporal, spatial = hf_run(tiny_hf_model, frames)
    assert len(e.attention) == len(temporal) == 2
    worst = 0.0
    for ours, hf_t, hf_s in zip(e.attention, heads_first(temporal), heads_first(spatial)):
        assert ours['temporal'].dtype == ours['spatial'].dtype == np.float32
        assert ours['temporal'].shape == (4, P, T, T) and ours['spatial'].shape == (4, T, 1 + P, 1 + P)
        worst = max(worst, np.abs(ours['temporal'] - hf_t.numpy()).max(), np.abs(ours['spatial'] - hf_s.numpy()).max())
    print(f'attention max abs difference vs HF: {worst:.1e}')
    assert worst < PROBS_TOL
    assert e.frame_indices == np.floor(np.linspace(0, 11, T)).astype(int).tolist()


def test_folding_the_temporal_projection_changes_no_probability(tiny_checkpoints, op, frames):
    unfolded = ActionClassifier(model_name=TINY, weights=tiny_checkpoints['hf_safetensors'], device='cpu')
    for block in unfolded.model.blocks:
        block.unfold_temporal_projection()
    assert op.model.blocks[0].temporal_out_weight is not None  # the operator's model runs folded
    folded, plain = op.explain(frames), unfolded.explain(frames)
    for a, b in zip(folded.attention, plain.attention):
        for kind in ('temporal', 'spatial'):
            assert np.abs(a[kind] - b[kind]).max() < 1e-6


def test_rollout_equals_the_token_matrix_product_of_hfs_probabilities(op, tiny_hf_model, frames):
    e = op.explain(frames)
    _, _, temporal, spatial = hf_run(tiny_hf_model, frames)
    with torch.no_grad():
        reference = reference_relevance(temporal, spatial, keep=0.5, mix=0.5, class_self=1.0)
    assert e.method == 'rollout' and e.relevance.shape == (T, GRID, GRID)
    assert_relevance_close(e.relevance, reference)


@pytest.mark.parametrize('kind', ['label', 'embedding'])
def test_gradient_maps_equal_relu_grad_times_attention_from_hfs_autograd(op, tiny_hf_model, frames, kind):
    logits, feature, temporal, spatial = hf_run(tiny_hf_model, frames)
    if kind == 'label':
        target = 7
        y = logits[target]
    else:
        target = np.random.default_rng(0).standard_normal(feature.shape[0]).astype(np.float32)
        y = torch.nn.functional.cosine_similarity(feature, torch.from_numpy(target), dim=0)
    grads = torch.autograd.grad(y, temporal + spatial)
    weighted = [(g * a).clamp(min=0).detach() for g, a in zip(grads, temporal + spatial)]
    reference = reference_relevance(weighted[:2], weighted[2:], keep=1.0, mix=1.0, class_self=0.0)

    e = op.explain(frames, target=target, method='gradient')
    assert e.method == 'gradient'
    if kind == 'label':
        assert e.label == op.labels[7] and abs(e.score - float(logits.detach().softmax(-1)[7])) < 1e-6
    else:
        assert e.label is None and abs(e.score - float(y.detach())) < 1e-5
    assert_relevance_close(e.relevance, reference)


def focus_spatial_attention(model, patch: int, strength: float = 100.0) -> None:
    """Every spatial attention head of every block attends to patch `patch` of each frame: queries are constant,
    keys read feature 0, and only that patch's position embedding has a large feature 0."""
    d = model.embed_dim
    heads = model.blocks[0].attn.num_heads
    hd = d // heads
    with torch.no_grad():
        model.patch_embed.proj.weight[0] = 0
        model.patch_embed.proj.bias[0] = 0
        model.time_embed[..., 0] = 0
        model.cls_token[..., 0] = 0
        model.pos_embed[..., 0] = 0
        model.pos_embed[0, 1 + patch, 0] = 50.0
        for block in model.blocks:
            qkv = block.attn.qkv
            qkv.weight[:2 * d] = 0
            qkv.bias[:2 * d] = 0
            for h in range(heads):
                qkv.bias[h * hd] = strength  # query: constant
                qkv.weight[d + h * hd, 0] = 1.0  # key: the normalised feature 0


@pytest.mark.parametrize('height, width', [(64, 96), (96, 64)], ids=['landscape', 'portrait'])
def test_attention_forced_onto_one_patch_puts_the_peak_there_on_every_frame(tiny_checkpoints, height, width):
    op = ActionClassifier(model_name=TINY, weights=tiny_checkpoints['hf_safetensors'], device='cpu')
    row, col = 1, 2
    focus_spatial_attention(op.model, row * GRID + col)
    e = op.explain(random_frames(10, height, width, seed=4))
    assert all(np.abs(a['spatial'][..., 1:, 1 + row * GRID + col]).min() > 0.99 for a in e.attention)
    for relevance in e.relevance:
        assert np.unravel_index(relevance.argmax(), relevance.shape) == (row, col)
    # On the frame: short side 64 = the crop; the long side 96 is cut by 16 px at each end.
    top, left = (0, 16) if width > height else (16, 0)
    assert e.heatmaps.shape == (T, height, width) and e.heatmaps.dtype == np.float32
    assert e.heatmaps.min() >= 0 and e.heatmaps.max() <= 1
    for heatmap in e.heatmaps:
        y, x = np.unravel_index(heatmap.argmax(), heatmap.shape)
        assert top + row * PATCH <= y < top + (row + 1) * PATCH and left + col * PATCH <= x < left + (col + 1) * PATCH
        outside = heatmap[:top] if top else heatmap[:, :left]
        assert outside.max() == 0  # the model never saw it


def test_rerandomising_the_last_block_changes_the_maps(tiny_checkpoints, op, frames):
    """Adebayo et al. 2018: maps that survive randomising the weights explain the input, not the model.

    The last block is drawn again at std 0.2 (the reference weights' attention is near uniform, max 0.07 against
    1/17, so a draw at their own scale would be near uniform too and change little). Measured correlations of the
    relevance before and after: 0.44 (rollout), 0.19 (gradient).
    """
    changed = ActionClassifier(model_name=TINY, weights=tiny_checkpoints['hf_safetensors'], device='cpu')
    torch.manual_seed(5)
    with torch.no_grad():
        for p in changed.model.blocks[-1].parameters():
            p.copy_(torch.randn_like(p) * max(float(p.std()), 0.2))
    changed.model.fold_temporal_projections()  # again, after changing the weights
    for method in ('rollout', 'gradient'):
        before = op.explain(frames, target=0, method=method).relevance
        after = changed.explain(frames, target=0, method=method).relevance
        correlation = np.corrcoef(before.ravel(), after.ravel())[0, 1]
        print(f'{method}: correlation of the maps before and after {correlation:.3f}')
        assert correlation < 0.6, (method, correlation)


def test_the_default_target_is_the_top_label_of_the_centre_crop(op, frames):
    labels, scores, _ = op(frames)
    e = op.explain(frames)
    assert e.label == labels[0] and abs(e.score - scores[0]) < 1e-5
    by_name = op.explain(frames, target=labels[1])
    assert by_name.label == labels[1] and abs(by_name.score - scores[1]) < 1e-5
    np.testing.assert_array_equal(by_name.relevance, e.relevance)  # rollout does not depend on the label


@pytest.mark.parametrize('target, method, error, words', [
    ('no such action', None, ValueError, 'not one of'),
    (400, None, ValueError, '0..399'),
    (np.zeros(47, np.float32), None, ValueError, 'shape (48,)'),
    (np.ones(48, np.float32), 'rollout', ValueError, "method='gradient'"),
    (np.full(48, 1e-30, np.float32), None, ValueError, 'norm above'),  # no direction to take a cosine against
    (0, 'saliency', ValueError, "'rollout' or 'gradient'"),
    (1.5, None, TypeError, 'label name'),
])
def test_bad_targets_and_methods_say_what_is_expected(op, frames, target, method, error, words):
    with pytest.raises(error, match=None) as caught:
        op.explain(frames, target=target, method=method)
    assert words in str(caught.value)


def test_a_target_along_the_clips_own_feature_is_explained_by_rollout_with_a_warning(op, frames):
    """A search hit that is the query itself: the similarity is 1, where its gradient is zero and the map would be
    float32 rounding noise scaled up to [0, 1] (measured: different at each run). Rollout is drawn, and said."""
    feature = op(frames)[2]
    for target in (feature, -feature):
        with pytest.warns(errors.SaturatedSimilarityWarning, match='gradient vanishes'):
            e = op.explain(frames, target=target)
        assert e.method == 'rollout' and abs(abs(e.score) - 1) < 1e-6
        np.testing.assert_array_equal(e.relevance, op.explain(frames).relevance)
    tilted = feature + np.random.default_rng(0).normal(0, 0.5, feature.shape).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # an embedding off the feature's direction: no warning, a gradient map
        e = op.explain(frames, target=tilted)
    assert e.method == 'gradient' and e.score < 0.999


def test_plain_calls_keep_the_fused_attention_and_explain_forms_the_probabilities(op, frames, monkeypatch):
    calls = []
    fused = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(model_module.F, 'scaled_dot_product_attention',
                        lambda *args, **kwargs: calls.append(1) or fused(*args, **kwargs))
    op(frames)
    assert len(calls) == 2 * len(op.model.blocks)
    calls.clear()
    op.explain(frames)
    assert calls == []
    op(frames)
    assert len(calls) == 2 * len(op.model.blocks)  # explain left nothing switched on


def screenshot(page, png, tmp_path, size='1000,700'):
    profile = tmp_path / 'chromium-profile'
    profile.mkdir(exist_ok=True)
    shot = subprocess.run(
        [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         f'--user-data-dir={profile}', f'--window-size={size}', f'--screenshot={png}', page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and png.exists(), shot.stderr
    from PIL import Image

    return np.asarray(Image.open(png).convert('RGB')).astype(int)


def test_the_png_shows_frames_with_their_maps_in_headless_chromium(op, tmp_path):
    grey = np.full((12, 64, 96, 3), 128, np.uint8)
    e = op.explain(grey)
    path = e.save(tmp_path / 'maps.png')
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == 'PNG' and image.width > 4 * 224 * 96 // 64
    assert e._repr_png_()[:8] == b'\x89PNG\r\n\x1a\n'
    page = tmp_path / 'maps.html'
    page.write_text(f'<!DOCTYPE html><html><body style="margin:0;background:#fff"><img src="{path.name}">'
                    f'</body></html>')
    pixels = screenshot(page, tmp_path / 'shot.png', tmp_path, size='1400,600')
    r, b = pixels[..., 0], pixels[..., 2]
    # Grey frames under the 'jet' colours: low relevance blends to blue, high to red. A broken image is a small
    # icon with neither; the page itself is white.
    blue, red = (b - r > 40).sum(), (r - b > 40).sum()
    assert blue > 8 * 224 * 20 and red > 100, (blue, red)


@pytest.mark.parametrize('suffix', ['.gif', '.webp'])
def test_an_animation_has_one_frame_per_sampled_frame(op, frames, tmp_path, suffix):
    from PIL import Image

    path = op.explain(frames).save(tmp_path / f'maps{suffix}', height=64)
    with Image.open(path) as image:
        assert image.n_frames == T and image.size == (96 * 64 // 72, 64)


def test_an_unknown_picture_extension_names_the_ones_supported(op, frames, tmp_path):
    with pytest.raises(ValueError, match=r'\.png, \.gif, \.webp'):
        op.explain(frames).save(tmp_path / 'maps.jpg')


@pytest.mark.parametrize('int8_method, works', [('rollout', True), ('gradient', False)])
def test_int8_explains_by_rollout_and_says_why_not_by_gradient(tiny_checkpoints, frames, int8_method, works):
    op = ActionClassifier(model_name=TINY, weights=tiny_checkpoints['hf_safetensors'], device='cpu', precision='int8')
    if works:
        assert op.explain(frames, method=int8_method).heatmaps.shape == (T, 72, 96)
    else:
        with pytest.raises(ValueError, match="precision='fp32'"):
            op.explain(frames, method=int8_method)


@pytest.fixture(scope='module')
def cli_setup(tiny_weights, tmp_path_factory):
    import json

    from timesformer_video.synthetic import make_video

    root = tmp_path_factory.mktemp('explain_cli')
    make_video(root / 'clip.mp4', seconds=4, size=(96, 64), fps=8, seed=2)
    (root / 'tiny.json').write_text(json.dumps(TINY_CFG))
    return root, ['--model-cfg', root / 'tiny.json', '--weights', tiny_weights]


def test_the_explain_command_saves_the_maps_of_the_label_asked_for(cli_setup, op):
    root, model_args = cli_setup
    label = op.labels[3]
    result = videos_py('explain', 'clip.mp4', '--start', 1, '--end', 3, '--label', label, '--out', 'maps.png',
                       *model_args, cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f'maps.png: {label} (') and 'rollout' in result.stdout
    from PIL import Image

    with Image.open(root / 'maps.png') as image:
        assert image.format == 'PNG'


def test_the_explain_command_takes_an_image_sequence_as_the_decoder_does(cli_setup):
    """What FFmpeg opens (README), the command opens: a `%03d` pattern is a video, as in `index`."""
    root, model_args = cli_setup
    (root / 'stills').mkdir()
    subprocess.run(['ffmpeg', '-v', 'error', '-i', str(root / 'clip.mp4'), str(root / 'stills' / 'f%03d.png')],
                   check=True, timeout=120)
    result = videos_py('explain', 'stills/f%03d.png', '--out', 'stills.png', *model_args, cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('stills.png: ') and (root / 'stills.png').is_file()


@pytest.mark.parametrize('args, complaint', [
    (['clip.mp4', '--out', 'maps.jpg'], 'name the picture with one of .png, .gif, .webp'),
    (['missing.mp4', '--out', 'maps.png'], 'missing.mp4: video not found'),
    (['clip.mp4', '--out', 'maps.png', '--start', 3, '--end', 2], '--start (3.0) must be before --end (2.0)'),
    (['clip.mp4', '--out', 'maps.png', '--start', 5], 'no frames to explain (--start/--end)'),  # a 4 s video
    (['clip.mp4', '--out', 'maps.png', '--method', 'saliency'],
     "Invalid value for '--method': 'saliency' is not one of 'rollout', 'gradient'"),
])
def test_bad_explain_arguments_are_one_line_errors_with_exit_status_2(cli_setup, args, complaint):
    root, model_args = cli_setup
    result = videos_py('explain', *args, *model_args, cwd=root)
    assert result.returncode == 2 and complaint in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_moments_page_shows_each_hits_frames_with_their_maps_in_headless_chromium(cli_setup, op, tmp_path):
    """The page as `search --moments --html --maps` writes it, for two hand-made hits of one video: a strip of
    thumbnails, then the clip's 8 frames with the map of their similarity to the query drawn over them."""
    from timesformer_video.jobs.moments_page import map_thumbnails, write_page

    root, _ = cli_setup
    video = str(root / 'clip.mp4')
    query = op(np.full((8, 64, 96, 3), 128, np.uint8))[2]
    hits = [{'path': video, 'start_ms': start, 'end_ms': start + 2000, 'distance': 0.9, 'label': 'x', 'score': 0.5}
            for start in (0, 2000)]
    plain = write_page(tmp_path / 'plain.html', 'query.mp4', hits)
    page = write_page(tmp_path / 'hits.html', 'query.mp4', hits,
                      maps=lambda hit: map_thumbnails(op, query, hit['path'], hit['start_ms'], hit['end_ms']))
    assert page.read_text().count('alt="attention map of') == 2 * T
    drawn = [(screenshot(html, tmp_path / f'{html.stem}.png', tmp_path, size='1400,700') < 250).any(-1).sum()
             for html in (plain, page)]
    # Each hit's 8 frames with maps, 144 x 96 px each, add that many drawn pixels; an image that does not load is
    # a 16 px icon.
    assert drawn[1] - drawn[0] > 0.9 * 2 * T * 144 * 96, drawn


def test_search_moments_html_maps_draws_each_hits_maps(cli_setup, tmp_path):
    root, model_args = cli_setup
    db, page = tmp_path / 'videos.db', tmp_path / 'hits.html'
    index = videos_py('index', root / 'clip.mp4', '--out', tmp_path / 'moments.parquet', '--window', 2,
                      '--milvus', db, '--no-progress', *model_args, cwd=tmp_path)
    assert index.returncode == 0, index.stderr
    search = videos_py('search', root / 'clip.mp4', '--start', 2, '--end', 4, '--milvus', db, '--moments', '-k', 2,
                       '--html', page, '--maps', *model_args, cwd=tmp_path)
    assert search.returncode == 0, search.stderr
    text = page.read_text()
    assert text.count('alt="attention map of') == 2 * T and 'cannot draw' not in text
    no_page = videos_py('search', root / 'clip.mp4', '--milvus', db, '--moments', '--maps', *model_args, cwd=tmp_path)
    assert no_page.returncode == 2 and '--maps draws on the page: add --html' in no_page.stderr
