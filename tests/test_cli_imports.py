"""The command line starts light: help and a refused argument import no torch, Ray, Milvus, Towhee or Arrow.

Every `timesformer-videos` run is a fresh process: a user waits for each start, and the suite starts about 150.
Importing torch alone costs about 2 CPU-seconds a process (58 argument-error tests of test_cli.py: 61 CPU-s with
torch imported at start-up, 18 CPU-s without), so a heavy import belongs inside the command that needs it.
The reference is the interpreter's own `sys.modules` after the command has run.
"""

import json
import subprocess
import sys

import pytest

HEAVY = ('torch', 'ray', 'pymilvus', 'milvus_lite', 'towhee', 'transformers', 'pyarrow', 'pandas', 'onnx',
         'onnxruntime', 'matplotlib')
SCRIPT = '''
import json, sys
from timesformer_video.jobs.cli import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "modules": sorted({name.split(".")[0] for name in sys.modules})}))
'''


@pytest.mark.parametrize('args, status', [
    (['--help'], 0),
    (['index', '--help'], 0),
    (['search', '--help'], 0),
    (['index', 'clips', '--out', 'r.parquet', '--workers', '0'], 2),  # refused by click's type
    (['search', 'missing.mp4', '--milvus', 'none.db'], 2),  # refused by a pre-flight check
])
def test_help_and_refused_arguments_import_no_heavy_library(args, status, tmp_path):
    result = subprocess.run([sys.executable, '-c', SCRIPT, *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got['status'] == status, result.stderr
    assert [name for name in HEAVY if name in got['modules']] == []
