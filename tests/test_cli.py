"""`scripts/videos.py` as a user meets it: argument errors, the failure summary and exit status, Ray's console.

Exit statuses (jobs/cli.py): 0 done, 1 the job could not run, 2 a bad argument (one line, before any model or
database is touched), 3 `index` finished but the output records failed videos.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, TINY

from timesformer_video.synthetic import make_video

VIDEOS_PY = ROOT / 'scripts' / 'videos.py'
TINY_CFG = {'name': TINY, 'base': 'timesformer_k400_8x224', 'image_size': 64, 'embed_dim': 48, 'depth': 2,
            'num_heads': 4}  # conftest's tiny_weights record


def videos_py(*args, cwd):
    return subprocess.run([sys.executable, str(VIDEOS_PY), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})


@pytest.fixture(scope='module')
def clips(tmp_path_factory, tiny_weights):
    root = tmp_path_factory.mktemp('cli')
    for i in range(2):
        make_video(root / 'clips' / f'clip{i}.mp4', n_frames=6, size=(96, 64), fps=6, seed=i)
    (root / 'clips' / 'broken.mp4').write_bytes(b'not a video' * 30)
    (root / 'tiny.json').write_text(json.dumps(TINY_CFG))
    return root


@pytest.mark.parametrize('args, complaint', [
    (['search', 'q.mp4', '--milvus', 'v.db', '-k', '0'], 'argument -k: must be at least 1, got 0'),
    (['search', 'q.mp4', '--milvus', 'v.db', '--topk', '-1'], 'argument --topk: must be at least 1'),
    (['search', 'clips/clip0.mp4', '--milvus', 'nothing_here.db'], 'no Milvus Lite database there'),
    (['search', 'missing.mp4', '--milvus', 'v.db'], 'missing.mp4: query video not found'),
    (['search', 'clips/clip0.mp4', '--milvus', 'videos'], 'a path ending in .db'),
    (['index', 'clips', '--out', 'r.parquet', '--workers', '0'], 'argument --workers: must be at least 1'),
    (['index', 'clips', '--out', 'r.parquet', '--chunk-seconds', 'nan'], 'argument --chunk-seconds: must be more'),
    (['index', 'clips', '--out', 'r.parquet', '--cpus-per-worker', '0'], 'must be more than 0'),
    (['index', 'clips', '--out', 'r.parquet', '--clip-batch', 'x'], "expected a number, got 'x'"),
    (['index', 'clips', '--out', 'r.parquet', '--weights', 'nope.pth'], 'weights file not found'),
    (['index', 'clips', '--out', 'r.parquet', '--model-cfg', 'nope.json'], 'nope.json: file not found'),
    # Every option says what it accepts (exit 2), also where only the model's record or Milvus knows the range.
    (['index', 'clips', '--out', 'r.parquet', '--model-cfg', 'tiny.json', '--window', '0.0004'],
     '--window/--stride: window must be at least 0.001 s'),  # the operator's own rule (windows.check_window)
    (['index', 'clips', '--out', 'r.parquet', '--model-cfg', 'tiny.json', '--topk', '401'],
     'argument --topk: must be at most 400 (the labels of timesformer_tiny_test), got 401 (accepted: 1..400)'),
    (['search', 'clips/clip0.mp4', '--milvus', 'v.db', '-k', '20000'],
     'argument -k: must be at most 16384, got 20000 (accepted: 1..16384)'),
    (['index', 'clips', '--out', 'r.parquet', '--chunk-seconds', 'inf'], 'must be more than 0 (finite), got inf'),
    (['index', 'clips', '--out', 'r.parquet', '--gpus-per-worker', 'inf'], 'must be finite, got inf'),
    (['index', 'clips', '--out', 'r.parquet', '--milvus', 'v.db', '--collection', 'my-videos'],
     'a Milvus collection name is 1 to 255 letters, digits and underscores'),
    (['index', 'clips', '--out', 'r.parquet', '--model-name', 'nope'], "unknown model_name 'nope'; supported: "),
    (['index', 'clips', '--out', 'r.parquet', '--model-cfg', 'clips/broken.mp4'], 'broken.mp4: not valid JSON'),
    (['index', 'clips', '--out', 'r.parquet', '--device', 'tpu'], "device must be 'cpu', 'cuda', 'cuda:N'"),
    (['index', 'clips', '--out', 'r.parquet', '--device', 'cpu', '--precision', 'fp16'],
     "precision='fp16' is slower than fp32 on the CPU"),
    (['index', 'clips', '--out', 'clips'], '--out clips is a directory; give a file name such as results.parquet'),
    (['index', 'clips', '--out', 'r.csv'], 'results are written as Parquet (.parquet) or JSON lines (.jsonl)'),
    (['index', 'clips', '--out', 'tiny.json/r.parquet'], 'tiny.json is a file, not a folder'),
    (['search', 'clips/clip0.mp4', '--milvus', 'v.db', '--moments', '--html', 'clips'],
     '--html clips is a directory; give a file name such as hits.html'),
    (['search', 'clips/clip0.mp4', '--milvus', 'v.db', '--moments', '--html', 'tiny.json/hits.html'],
     'tiny.json is a file, not a folder'),
])
def test_a_bad_argument_is_one_line_and_exit_status_2_before_anything_loads(clips, args, complaint):
    result = videos_py(*args, cwd=clips)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and complaint in lines[0], result.stderr
    assert lines[0].startswith(f'videos.py {args[0]}: error: ')
    assert result.stdout == ''
    # Nothing was created: no database directory, no output or its sidecar.
    assert sorted(p.name for p in clips.iterdir()) == ['clips', 'tiny.json']


def test_failed_inputs_are_summarized_and_exit_with_status_3(clips, tiny_weights, tmp_path):
    out = tmp_path / 'r.parquet'
    result = videos_py('index', 'clips', 'clipz', '--out', out, '--model-cfg', 'tiny.json', '--weights',
                       tiny_weights, '--no-progress', cwd=clips)
    assert result.returncode == 3, result.stderr
    assert '4 videos, 4 processed now (2 failed)' in result.stdout
    summary = result.stderr[result.stderr.index('2 videos failed'):].splitlines()
    assert summary[0] == '2 videos failed (1 FileNotFoundError, 1 NotAVideoError):'
    assert summary[1].startswith(f'  {clips / "clips" / "broken.mp4"}: NotAVideoError: ')
    assert summary[2].startswith(f'  {clips / "clipz"}: FileNotFoundError: ')
    assert '--retry-failed' in summary[3] and str(out) in summary[3]

    good = videos_py('index', 'clips/clip0.mp4', 'clips/clip1.mp4', '--out', tmp_path / 'good.jsonl',
                     '--model-cfg', 'tiny.json', '--weights', tiny_weights, '--no-progress', cwd=clips)
    assert good.returncode == 0 and 'failed (' not in good.stderr


def test_ray_runs_keep_rays_own_notices_quiet_unless_verbose(clips, tiny_weights, tmp_path):
    pytest.importorskip('ray')
    result = videos_py('index', 'clips', '--out', tmp_path / 'r.parquet', '--engine', 'ray', '--workers', '1',
                       '--model-cfg', 'tiny.json', '--weights', tiny_weights, '--no-progress', cwd=clips)
    assert result.returncode == 3, result.stderr  # broken.mp4
    assert 'Token authentication' not in result.stderr and 'Progress bars disabled' not in result.stderr
    assert 'core_worker' not in result.stderr  # Ray's C++ warning about restarting replicas: none on a local Ray
    assert '1 video failed (1 NotAVideoError):' in result.stderr


@pytest.mark.parametrize('args, status, message', [
    (['--help'], 0, 'bash scripts/demo.sh [--random-weights] [VIDEO]'),
    (['--bogus'], 2, 'demo: unknown option --bogus'),
    (['missing.mp4', '--random-weights'], 2, 'demo: no video file at missing.mp4'),  # never a synthetic stand-in
    (['a.mp4', 'b.mp4'], 2, 'demo: one VIDEO at a time'),
])
def test_demo_arguments_are_checked_before_anything_is_set_up(tmp_path, args, status, message):
    """demo.sh takes its options in any order, and a VIDEO that is not there is an error, not a generated clip."""
    result = subprocess.run(['bash', str(ROOT / 'scripts' / 'demo.sh'), *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == status and message in result.stdout + result.stderr
    assert '[setup' not in result.stderr and not list(tmp_path.iterdir())


def test_a_truncated_query_video_is_refused_with_one_message(clips, tiny_weights, tmp_path):
    """A query cut short (a download that stopped) is refused once, with why: no warning first, no hits."""
    import av

    indexed = videos_py('index', 'clips', '--out', tmp_path / 'r.parquet', '--milvus', tmp_path / 'v.db',
                        '--model-cfg', 'tiny.json', '--weights', tiny_weights, '--no-progress', cwd=clips)
    assert indexed.returncode == 3, indexed.stderr  # broken.mp4
    data = make_video(tmp_path / 'q.mp4', n_frames=30, size=(96, 64), fps=10, faststart=True).read_bytes()
    cut = tmp_path / 'cut.mp4'
    cut.write_bytes(data[:len(data) * 6 // 10])
    decoded = 0
    with av.open(str(cut)) as container:  # the reference: the header says 30 frames, fewer decode
        assert container.streams.video[0].frames == 30
        try:
            for _ in container.decode(video=0):
                decoded += 1
        except av.error.InvalidDataError:  # the cut packet
            pass
    assert decoded < 30

    result = videos_py('search', cut, '--milvus', tmp_path / 'v.db', '--model-cfg', 'tiny.json', '--weights',
                       tiny_weights, cwd=clips)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f'error: cannot embed the query video {cut}: '), lines[0]
    assert 'Search with a video that decodes to its end' in lines[0]
    assert result.stdout == ''
