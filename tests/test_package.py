"""The repository is one installable package: `pip install .` into a fresh virtualenv gives `timesformer_video`,
importable by name from anywhere, with its label files and its command; its core runs without Towhee.

The fresh virtualenv borrows the test environment's third-party packages through a `.pth` path line (a plain
directory entry: that directory's own `.pth` files, among them the editable install of this checkout, are not
run), so only the `pip install .` here can provide `timesformer_video`.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from conftest import install_operators

ROOT = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent('''
    import json, sys
    import numpy as np, torch
    import timesformer_video
    from timesformer_video import ActionClassifier, ClipTransform, build_model, create_model, get_cfg, register_model
    from timesformer_video.errors import CheckpointError, NotAVideoError, VideoDecodeError
    import dataclasses

    weights = sys.argv[1]
    cfg = register_model(dataclasses.replace(get_cfg('timesformer_k400_8x224'), name='tiny_pkg', image_size=64,
                                             embed_dim=48, depth=2, num_heads=4))
    torch.manual_seed(0)
    torch.save(create_model(cfg).state_dict(), weights)
    model = build_model('tiny_pkg', weights, device='cpu')
    classify = ActionClassifier('tiny_pkg', weights=weights, device='cpu')
    labels, scores, feature = classify(np.zeros((8, 64, 64, 3), np.uint8))
    print(json.dumps({
        'file': timesformer_video.__file__,
        'labels': len(get_cfg('timesformer_k400_8x224').labels),
        'result': [len(labels), len(scores), list(feature.shape)],
        'towhee_imported': 'towhee' in sys.modules,
        'errors_typed': issubclass(NotAVideoError, VideoDecodeError) and issubclass(CheckpointError, ValueError),
    }))
''')


def bare_venv(venv: Path) -> tuple[Path, Path]:
    """A new virtualenv that sees the test environment's third-party packages but not timesformer_video."""
    base_python = Path(sys.base_prefix) / 'bin' / f'python{sys.version_info.major}.{sys.version_info.minor}'
    subprocess.run([str(base_python), '-m', 'venv', '--without-pip', str(venv)], check=True)
    where = 'import sysconfig; print(sysconfig.get_path("purelib"))'
    site = Path(subprocess.run([str(venv / 'bin' / 'python'), '-c', where], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / 'borrowed.pth').write_text(sysconfig.get_path('purelib') + '\n')  # third-party packages only
    probe = subprocess.run([str(venv / 'bin' / 'python'), '-I', '-c', 'import timesformer_video'],
                           capture_output=True, text=True, cwd=venv)
    assert probe.returncode != 0, 'the fresh virtualenv already sees timesformer_video: the test would prove nothing'
    return venv, site


@pytest.fixture(scope='module')
def fresh(tmp_path_factory):
    """A new virtualenv with `pip install .` of a clean copy of this checkout; returns its `bin` directory."""
    base = tmp_path_factory.mktemp('package')
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split('\0')
    source = base / 'source'
    for name in filter(None, listed):
        if (ROOT / name).is_file() and not name.startswith('.venv'):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    venv, site = bare_venv(base / 'venv')
    subprocess.run([sys.executable, '-m', 'pip', '--python', str(venv / 'bin' / 'python'), 'install', '--quiet',
                    '--disable-pip-version-check', '--no-deps', '--no-build-isolation', str(source)],
                   check=True, capture_output=True, cwd=base)
    return venv / 'bin', site, base


def test_pip_install_gives_the_package_by_name_with_its_labels_and_a_towhee_free_core(fresh):
    bin_dir, site, base = fresh
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    out = subprocess.run([str(bin_dir / 'python'), '-I', '-c', CHECK, str(base / 'tiny.pth')], cwd=base, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got['file']).is_relative_to(site)  # the installed copy, not this checkout
    assert got['labels'] == 400  # kinetics_400.json shipped as package data
    assert got['result'] == [5, 5, [48]]
    assert got['towhee_imported'] is False  # building and running the classifier needs no Towhee
    assert got['errors_typed'] is True


def test_pip_install_gives_the_batch_command(fresh):
    bin_dir, _, base = fresh
    out = subprocess.run([str(bin_dir / 'timesformer-videos'), '--help'], cwd=base, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith('Usage: timesformer-videos ') and 'index' in out.stdout and 'search' in out.stdout
    bad = subprocess.run([str(bin_dir / 'timesformer-videos'), 'index'], cwd=base, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith('timesformer-videos index: error: ')  # named as run


def test_an_operator_in_the_towhee_cache_without_the_package_says_how_to_install_it(tmp_path):
    venv, _ = bare_venv(tmp_path / 'venv')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['TOWHEE_HOME'] = str(tmp_path / 'towhee')
    install_operators(env)
    script = 'from towhee import ops\nops.video_decode.ffmpeg().get_op()'
    out = subprocess.run([str(venv / 'bin' / 'python'), '-I', '-c', script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert (f'video-decode/ffmpeg needs the timesformer_video package, which is not installed in '
            f'{venv / "bin" / "python"}') in out.stderr and '`bash scripts/setup.sh`' in out.stderr
