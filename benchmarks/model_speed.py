"""Model speed: our TimeSformer forward against HF transformers, the machine's matmul peak, batch sizes, precisions.

One run, one set of random weights (HF's `TimesformerForVideoClassification`, perturbed, saved with
`save_pretrained` and loaded by the operator from that directory), one random input per batch size. Every timing is
the median of `--repeats` runs after `--warmup` runs; implementations compared with each other run round-robin
(A, B, A, B, ...) so that load from other processes falls on both alike. Each precision's error is measured against
our fp32 output on the same input: the minimum feature cosine similarity over the batch and the maximum absolute
difference of the softmax scores.

    .venv/bin/python benchmarks/model_speed.py                      # CPU: fp32, bf16 (if native), int8, onnxruntime
    .venv/bin/python benchmarks/model_speed.py --device cuda --batch-sizes 1 8 32

Prints a table and writes JSON (`--json`). The model is the cost, so the clips are random tensors: decoding and
preprocessing are not timed here.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from timesformer_video import ActionClassifier
from timesformer_video.build import cpu_has_native_bf16, create_model, resolve_device

ROOT = Path(__file__).resolve().parents[1]
NUM_FRAMES, IMAGE_SIZE = 8, 224


def make_hf_model(seed: int = 0):
    """HF's model with every parameter perturbed (its init leaves some at zero), as tests/conftest.py does."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    torch.manual_seed(seed)
    cfg = TimesformerConfig(num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, num_labels=400)
    model = TimesformerForVideoClassification(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        model.classifier.weight.normal_(0, 0.1)  # logits a few units apart: score errors show
    return model


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def round_robin(fns: dict, repeats: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call for each function, interleaved so that background load hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def gemm(m: int, k: int, n: int, device: torch.device, dtype: torch.dtype):
    """`x (m, k) @ w (n, k).T`, laid out as nn.Linear computes it (its weight is stored transposed)."""
    x = torch.randn(m, k, device=device, dtype=dtype)
    w = torch.randn(n, k, device=device, dtype=dtype)
    return lambda: x @ w.t()


def matmul_peak(device: torch.device, dtype: torch.dtype, repeats: int) -> tuple[float, tuple[int, int, int]]:
    """Best median FLOP/s over a few GEMM shapes, square and the model's own (the MLP's, tokens x 768 x 3072).
    Returns (FLOP/s, (m, k, n))."""
    if device.type == 'cuda':
        shapes = [(8192, 8192, 8192), (50432, 768, 3072)]  # the second: batch 32 of the MLP's fc1
    else:
        shapes = [(2048, 2048, 2048), (1577, 768, 3072), (1577, 3072, 768)]
    best, best_shape = 0.0, shapes[0]
    for m, k, n in shapes:
        with torch.inference_mode():
            t = statistics.median(round_robin({'mm': gemm(m, k, n, device, dtype)}, max(repeats, 10), 3, device)['mm'])
        if 2 * m * k * n / t > best:
            best, best_shape = 2 * m * k * n / t, (m, k, n)
    return best, best_shape


def shape_label(shape: tuple[int, int, int]) -> str:
    m, k, n = shape
    return f'{m}x{k} @ {k}x{n}'


def model_flops(cfg) -> int:
    """FLOPs of one forward at batch 1 (matmuls, attention, patch conv) of the zoo record `cfg`'s model, counted by
    torch on a meta-device copy."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = create_model(cfg, meta=True)
    clip = torch.randn(1, 3, cfg.num_frames, cfg.image_size, cfg.image_size, device='meta')
    with FlopCounterMode(display=False) as counter:
        meta(clip)
    return counter.get_total_flops()


def cpu_name() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compare(out, ref) -> dict:
    """Error of (probs, features) against the fp32 reference on the same input."""
    probs, feats = out
    ref_probs, ref_feats = ref
    return {'feature_cosine_min': F.cosine_similarity(feats.float(), ref_feats.float(), dim=-1).min().item(),
            'feature_max_abs_diff': (feats.float() - ref_feats.float()).abs().max().item(),
            'score_max_abs_diff': (probs.float() - ref_probs.float()).abs().max().item()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:N]'")
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=None,
                        help='default: 1 2 4 on the CPU, 1 8 32 on CUDA')
    parser.add_argument('--precisions', nargs='+', default=None,
                        help='default: fp32 bf16 int8 on the CPU (bf16 only with native bf16), fp32 bf16 fp16 on CUDA')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per measurement (median reported)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None, help='torch and onnxruntime threads (default: torch)')
    parser.add_argument('--no-hf', action='store_true', help='skip HF transformers')
    parser.add_argument('--no-onnx', action='store_true', help='skip the onnxruntime rows')
    parser.add_argument('--json', type=Path, default=None,
                        help='where to write the results (default: benchmarks/results/model_speed_<device>.json)')
    args = parser.parse_args()

    if args.repeats < 5:
        parser.error('--repeats must be at least 5: medians of fewer runs are not worth reporting')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    on_cuda = device.type == 'cuda'
    batch_sizes = args.batch_sizes or ([1, 8, 32] if on_cuda else [1, 2, 4])
    if args.precisions:
        precisions = args.precisions
    elif on_cuda:
        precisions = ['fp32', 'bf16', 'fp16']
    else:
        precisions = ['fp32'] + (['bf16'] if cpu_has_native_bf16() else []) + ['int8']
    if 'fp32' not in precisions:
        precisions = ['fp32'] + precisions  # the reference for every error column
    json_path = args.json or ROOT / 'benchmarks' / 'results' / f'model_speed_{device.type}.json'

    load_before = tuple(round(v, 2) for v in os.getloadavg()) if hasattr(os, 'getloadavg') else None
    env = {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
           'torch': torch.__version__, 'threads': torch.get_num_threads(), 'cpu': cpu_name(),
           'cpu_count': os.cpu_count(), 'device': str(device),
           'gpu': torch.cuda.get_device_name(device) if on_cuda else None,
           'load_average_before': load_before}
    print(f'# {env["date"]}  torch {env["torch"]}  {env["gpu"] or env["cpu"]}  threads={env["threads"]}  '
          f'load average {load_before}')

    # The machine's matmul peak, fp32 and (where it has fast kernels) bf16/fp16: the best of a few shapes, then that
    # shape is timed again inside every round-robin below and the highest median kept, so that a burst of load
    # from elsewhere lowers neither the peak nor the model alone.
    peak_dtypes = {'fp32': torch.float32}
    if on_cuda or cpu_has_native_bf16():
        peak_dtypes['bf16'] = torch.bfloat16
    if on_cuda:
        peak_dtypes['fp16'] = torch.float16
    peaks = {name: matmul_peak(device, dtype, args.repeats) for name, dtype in peak_dtypes.items()}
    for name, (flops, shape) in peaks.items():
        print(f'# matmul peak {name}: {flops / 1e9:.1f} GFLOP/s ({shape_label(shape)})')

    # Every implementation is loaded first, so that each batch size times them all round-robin.
    workdir = Path(tempfile.mkdtemp(prefix='timesformer-bench-'))  # 0.5 GB of HF weights, ONNX: removed at exit
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    hf = make_hf_model()
    hf.save_pretrained(workdir / 'hf')
    hf = hf.to(device)
    ops = {p: ActionClassifier(weights=workdir / 'hf', device=str(device), precision=p) for p in precisions}
    flops_per_view = model_flops(ops['fp32'].cfg)
    runners = {}  # name -> (impl, precision, clips -> (probs, features) float32 on the CPU)
    if not args.no_hf:
        runners['hf'] = ('hf', 'fp32', lambda clips: hf_forward(hf, clips, device))
    for p, op in ops.items():
        runners[f'ours-{p}'] = ('ours', p, lambda clips, op=op: ours_forward(op, clips))
    if not args.no_onnx:
        runners.update(onnx_runner(ops['fp32'], device, workdir))
    peak_fns = {}
    for name, (_, (m, k, n)) in peaks.items():
        peak_fns[f'matmul-{name}'] = (name, 2 * m * k * n, gemm(m, k, n, device, peak_dtypes[name]))

    gen = torch.Generator().manual_seed(1)
    rows = []
    for batch in batch_sizes:
        clips = torch.randn(batch, 3, NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
        print(f'batch {batch}: timing {", ".join(runners)} round-robin ...', flush=True)
        fns = {name: fn for name, (_, _, fn) in peak_fns.items()}
        fns.update({name: (lambda fn=fn, clips=clips: fn(clips)) for name, (_, _, fn) in runners.items()})
        with torch.inference_mode():
            times = round_robin(fns, args.repeats, args.warmup, device)
        for name, (dtype_name, flops, _) in peak_fns.items():
            flops_per_s = flops / statistics.median(times[name])
            print(f'  {name:<12} {flops_per_s / 1e9:7.1f} GFLOP/s (peak so far {peaks[dtype_name][0] / 1e9:.1f})')
            if flops_per_s > peaks[dtype_name][0]:
                peaks[dtype_name] = (flops_per_s, peaks[dtype_name][1])
        outputs = {name: fn(clips) for name, (_, _, fn) in runners.items()}
        reference = outputs['ours-fp32']
        for name, (impl, precision, _) in runners.items():
            median = statistics.median(times[name])
            row = {'impl': impl, 'precision': precision, 'batch': batch, 'median_s': median,
                   'min_s': min(times[name]), 'times_s': times[name],
                   'per_view_s': median / batch, 'gflops_per_s': flops_per_view * batch / median / 1e9,
                   'speedup_vs_fp32': statistics.median(times['ours-fp32']) / median}
            peak = 'fp32' if impl in ('hf', 'ort-cpu', 'ort-cuda') else precision
            if peak in peaks:
                row['peak'] = peak
            if name == 'ours-fp32' and 'hf' in outputs:
                row['ratio_to_hf'] = median / statistics.median(times['hf'])
                row.update({f'vs_hf_{k}': v for k, v in compare(outputs['hf'], reference).items()})
            elif name != 'ours-fp32':
                row.update(compare(outputs[name], reference))
            rows.append(row)
            print(f'  {name:<12} {median:7.3f} s  {row["gflops_per_s"]:6.1f} GFLOP/s'
                  + (f'  ours/HF {row["ratio_to_hf"]:.3f}' if 'ratio_to_hf' in row else ''), flush=True)

    for row in rows:  # against the highest peak seen in the whole run
        if 'peak' in row:
            row['pct_of_peak'] = 100 * row['gflops_per_s'] * 1e9 / peaks[row['peak']][0]
    env['load_average_after'] = tuple(round(v, 2) for v in os.getloadavg()) if hasattr(os, 'getloadavg') else None
    result = {'env': env, 'gflop_per_view': flops_per_view / 1e9, 'num_frames': NUM_FRAMES, 'image_size': IMAGE_SIZE,
              'repeats': args.repeats, 'warmup': args.warmup,
              'matmul_peak_gflops': {k: {'gflops': v[0] / 1e9, 'shape': shape_label(v[1])} for k, v in peaks.items()},
              'rows': rows}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1))
    print()
    print(markdown_table(result))
    print(f'\nJSON: {json_path}')
    return 0


def ours_forward(op: ActionClassifier, clips: torch.Tensor):
    """Our classifier's forward -> (probabilities, features), float32 on the CPU, as the HF and ONNX rows return."""
    logits, features = op.forward(clips)
    return logits.softmax(-1), features


def hf_forward(hf, clips: torch.Tensor, device: torch.device):
    """HF's own forward (`timesformer`, then the classifier on the CLS token), returning what ours returns."""
    with torch.inference_mode():
        features = hf.timesformer(clips.permute(0, 2, 1, 3, 4).to(device))[0][:, 0]  # HF: (B, T, C, H, W)
        probs = hf.classifier(features).softmax(-1)
    return probs.float().cpu(), features.float().cpu()


def onnx_runner(op, device: torch.device, workdir: Path) -> dict:
    """The operator's ONNX export in onnxruntime (its CUDA provider on a GPU, where installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        print('# onnxruntime not installed: no ONNX rows (pip install onnx onnxscript onnxruntime)')
        return {}
    if device.type == 'cuda' and 'CUDAExecutionProvider' not in ort.get_available_providers():
        print('# onnxruntime has no CUDA provider here (pip install onnxruntime-gpu): no ONNX rows on the GPU')
        return {}
    start = time.perf_counter()
    path = op.save_model('onnx', workdir / 'model.onnx')
    print(f'# ONNX export: {time.perf_counter() - start:.0f} s, {path.stat().st_size / 1e6:.0f} MB')
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # onnxruntime's threads otherwise spin for a while after each run, taking the cores from whatever runs next in
    # the round-robin (it made the matmul peak that followed it read at half its speed).
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    providers = ['CPUExecutionProvider']
    if device.type == 'cuda':
        providers.insert(0, ('CUDAExecutionProvider', {'device_id': device.index or 0}))
    session = ort.InferenceSession(str(path), options, providers=providers)
    name = 'ort-' + session.get_providers()[0].replace('ExecutionProvider', '').lower()

    def run(clips):
        logits, features = session.run(None, {'clips': clips.numpy()})
        return torch.from_numpy(logits).softmax(-1), torch.from_numpy(features)
    return {name: (name, 'fp32', run)}


def markdown_table(result: dict) -> str:
    head = ('| impl | precision | batch | median s | (min s) | s / view | GFLOP/s | % of peak | vs fp32 | ours / HF '
            '| feature cos (min) | max score diff |')
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    for r in result['rows']:
        pct = f'{r["pct_of_peak"]:.0f}% {r["peak"]}' if 'pct_of_peak' in r else '–'
        speed = f'{r["speedup_vs_fp32"]:.2f}×' if 'speedup_vs_fp32' in r else '–'
        ratio = f'{r["ratio_to_hf"]:.3f}' if 'ratio_to_hf' in r else '–'
        cos = f'{r["feature_cosine_min"]:.6f}' if 'feature_cosine_min' in r else '–'
        diff = r.get('score_max_abs_diff', r.get('vs_hf_score_max_abs_diff'))
        diff = f'{diff:.1e}' + (' (vs HF)' if 'vs_hf_score_max_abs_diff' in r else '') if diff is not None else '–'
        lines.append(f'| {r["impl"]} | {r["precision"]} | {r["batch"]} | {r["median_s"]:.3f} | {r["min_s"]:.3f} | '
                     f'{r["per_view_s"]:.3f} | {r["gflops_per_s"]:.1f} | {pct} | {speed} | {ratio} | {cos} | {diff} |')
    peaks = ', '.join(f'{k} {v["gflops"]:.0f} GFLOP/s ({v["shape"]})' for k, v in result['matmul_peak_gflops'].items())
    env = result['env']
    lines.append('')
    lines.append(f'{result["gflop_per_view"]:.1f} GFLOP per {result["num_frames"]}x{result["image_size"]} view; '
                 f'matmul peak: {peaks}; median of {result["repeats"]} after {result["warmup"]} warm-up; '
                 f'{env["gpu"] or env["cpu"]}, {env["threads"]} threads, torch {env["torch"]}, {env["date"]}; '
                 f'load average before/after {env["load_average_before"]} / {env["load_average_after"]}')
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(main())
