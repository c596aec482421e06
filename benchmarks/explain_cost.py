"""What `op.explain` costs against a plain call: time and peak memory, at 8x224 ViT-B, in one run.

Three cases on the same frames and random weights (`timesformer_k400_8x224`'s shape): `op(frames)` (the plain
call, fused SDPA attention), `op.explain(frames)` (rollout: one forward with the probabilities formed and kept) and
`op.explain(frames, method='gradient')` (a forward with the graph kept, then a backward to the probabilities).

- Time: the cases run round-robin (plain, rollout, gradient, plain, ...) in this process after one warm-up each, so
  load from other processes falls on all alike; the median of `--repeats` rounds.
- Peak memory: each case in a fresh child process (the allocator keeps no memory from another case), after one
  plain call there (first-call costs: thread pools, kernel caches): the highest resident set size during one call
  of the case (the kernel's VmHWM, reset just before the call through /proc/self/clear_refs) minus the resident
  size just before it.

    .venv/bin/python benchmarks/explain_cost.py [--repeats 3] [--json benchmarks/results/explain_cost.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = ('plain', 'rollout', 'gradient')
MODEL = 'timesformer_k400_8x224'


def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (32, 240, 320, 3), dtype=np.uint8)


def call(op, case: str, video: np.ndarray):
    if case == 'plain':
        return op(video)
    return op.explain(video, method=case)


def _status_kb(field: str) -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def measure_memory(weights: str, case: str) -> float:
    """Child process: MB of resident memory one call of `case` adds at its peak."""
    from timesformer_video import ActionClassifier

    op = ActionClassifier(MODEL, weights=weights, device='cpu')
    video = frames()
    call(op, 'plain', video)  # first-call costs (thread pools, kernel caches) are not the case's
    before = _status_kb('VmRSS')
    Path('/proc/self/clear_refs').write_text('5')  # VmHWM := VmRSS
    call(op, case, video)
    return (_status_kb('VmHWM') - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--json', default=None, help='also write the figures here')
    parser.add_argument('--memory-child', nargs=2, metavar=('WEIGHTS', 'CASE'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(measure_memory(*args.memory_child)))
        return

    import torch

    from timesformer_video import ActionClassifier
    from timesformer_video.jobs.operators import save_random_weights

    with tempfile.TemporaryDirectory() as tmp:
        weights = str(save_random_weights(Path(tmp) / 'random_vitb.pt', MODEL))
        memory = {}
        for case in CASES:
            out = subprocess.run([sys.executable, __file__, '--memory-child', weights, case], capture_output=True,
                                 text=True, check=True)
            memory[case] = float(out.stdout.strip().splitlines()[-1])
        op = ActionClassifier(MODEL, weights=weights, device='cpu')
        video = frames()
        for case in CASES:
            call(op, case, video)  # warm-up
        times = {case: [] for case in CASES}
        load = [os.getloadavg()[0]]
        for _ in range(args.repeats):
            for case in CASES:
                start = time.perf_counter()
                call(op, case, video)
                times[case].append(time.perf_counter() - start)
        load.append(os.getloadavg()[0])

    median = {case: statistics.median(times[case]) for case in CASES}
    print(f'{MODEL} on {torch.get_num_threads()} CPU threads, torch {torch.__version__}, load average '
          f'{load[0]:.1f} -> {load[1]:.1f}; median of {args.repeats} round-robin rounds')
    print(f'{"case":<10} {"median s":>9} {"x plain":>8} {"peak MB":>8} {"x plain":>8}')
    for case in CASES:
        print(f'{case:<10} {median[case]:9.2f} {median[case] / median["plain"]:7.2f}x {memory[case]:8.0f} '
              f'{memory[case] / memory["plain"]:7.2f}x')
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({'model': MODEL, 'threads': torch.get_num_threads(),
                                               'torch': torch.__version__, 'load_average': load, 'times_s': times,
                                               'median_s': median, 'peak_mb': memory}, indent=1))


if __name__ == '__main__':
    main()
