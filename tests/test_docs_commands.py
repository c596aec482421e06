"""Every command in README.md and docs/*.md runs as written, from a clean clone.

What this test does:

- It copies the working tree's files as `git clone` would get them (`git ls-files --cached --others
  --exclude-standard`: tracked files plus new ones not ignored; in CI, a clean clone) into a temporary directory.
- `.venv` there is a link to the virtualenv running the tests, so `scripts/setup.sh` finds it and proves itself
  idempotent and quick (it checks the requirements, installs the copy as the editable `timesformer_video` package,
  then installs the operators into a fresh `TOWHEE_HOME`), instead of downloading 6.6 GB again; afterwards the
  editable install points back at this checkout. Set-up from nothing is what CI's fresh machine does before this
  test runs.
- Each document's fenced `bash` and `python` blocks run in order, in the clone's root, like a reader pasting them
  into a terminal and one Python session (`.venv/bin/python`): bash blocks with `bash -euo pipefail`, python blocks
  `exec`ed in one namespace, so later blocks see earlier names.
- No network: `TIMESFORMER_WEIGHTS_BASE_URL` points at a closed port, and the torch hub cache holds a random-weight
  file under the release name, so commands that use "the released checkpoint" run (on meaningless labels).
- An HTML comment right before a block can say, visibly in the Markdown source:
  `<!-- docs-test: skip REASON -->` (a signature, placeholders, a cluster, a long benchmark: not run, and the
  reason is required), `<!-- docs-test: given COMMAND -->` (a bash command that makes what the block assumes,
  such as the video it reads, run first) or `<!-- docs-test: instead COMMAND -- REASON -->` (run COMMAND in the
  block's place: `bash scripts/test.sh` with a small selection, since running the whole suite inside itself is
  not sensible). Plain fences without a language (program output) and `json` are not commands.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
RUN_LANGUAGES = ('bash', 'python')
DIRECTIVE = re.compile(r'<!--\s*docs-test:\s*(skip|given|instead)\s+(.*?)\s*-->', re.DOTALL)
FENCE = re.compile(r'^```(\S*)\s*$')
BARE_PYTHON = re.compile(r'(^\s*|[;&|]\s*|\bdo\s+)python3?\s')  # the system python lacks the venv's packages


def blocks(doc: Path) -> list[dict]:
    """The fenced blocks of `doc`: language, code, line of the opening fence, and the directive right above it."""
    lines = doc.read_text(encoding='utf-8').splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, language = i, match.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith('```'))
        above = lines[start - 1] if start > 0 else ''
        directive = DIRECTIVE.search(above)
        found.append({'language': language, 'code': '\n'.join(lines[start + 1:end]) + '\n',
                      'where': f'{doc.relative_to(ROOT)}:{start + 1}',
                      'directive': directive.groups() if directive else None})
        i = end + 1
    return found


def steps(doc: Path) -> list[dict]:
    """What the test runs for `doc`, in order: {'kind': 'bash' | 'python', 'code', 'where'}."""
    out = []
    for block in blocks(doc):
        if block['language'] not in RUN_LANGUAGES:
            continue
        kind, argument = block['directive'] or (None, None)
        if kind == 'skip':
            continue
        if kind == 'given':
            out.append({'kind': 'bash', 'code': argument, 'where': f'{block["where"]} (given)'})
        if kind == 'instead':
            command = argument.split(' -- ')[0]
            out.append({'kind': 'bash', 'code': command, 'where': f'{block["where"]} (instead)'})
            continue
        out.append({'kind': block['language'], 'code': block['code'], 'where': block['where']})
    return out


DRIVER = r'''
import json, subprocess, sys, time, traceback
steps, report = json.load(open(sys.argv[1])), []
namespace = {'__name__': '__main__'}
for step in steps:
    print(f'=== {step["where"]} ({step["kind"]})', flush=True)
    start = time.monotonic()
    if step['kind'] == 'bash':
        result = subprocess.run(['bash', '-euo', 'pipefail', '-c', step['code']], capture_output=True, text=True)
        sys.stdout.write(result.stdout + result.stderr)
        report.append({'where': step['where'], 'code': step['code'], 'output': result.stdout + result.stderr})
        if result.returncode:
            print(f'FAILED: {step["where"]}: exit status {result.returncode}')
            break
    else:
        try:
            exec(compile(step['code'], step['where'], 'exec'), namespace)
        except BaseException:
            traceback.print_exc(file=sys.stdout)
            print(f'FAILED: {step["where"]}')
            break
        report.append({'where': step['where'], 'code': step['code'], 'output': ''})
    report[-1]['seconds'] = round(time.monotonic() - start, 1)
    print(f'--- {step["where"]}: {report[-1]["seconds"]} s', flush=True)
json.dump(report, open(sys.argv[2], 'w'))
'''


def test_every_command_block_is_run_or_says_why_not():
    """Cheap: a new block is run by default; a block not run carries its reason in the Markdown source."""
    for doc in DOCS:
        for block in blocks(doc):
            directive = block['directive']
            if directive and directive[0] == 'skip':
                assert block['language'] in RUN_LANGUAGES, f'{block["where"]}: skip on a block that is not run'
                assert len(directive[1].split()) >= 3, f'{block["where"]}: say why the block is not run'
            if directive and directive[0] == 'instead':
                assert ' -- ' in directive[1], f'{block["where"]}: say why another command runs instead'
            if block['language'] in ('sh', 'shell', 'console', 'py', 'python3'):
                pytest.fail(f'{block["where"]}: write ```bash or ```python so the block is run and checked')
            if block['language'] == 'bash':
                bare = [line for line in block['code'].splitlines() if BARE_PYTHON.search(line)]
                assert not bare, f'{block["where"]}: bare `python` (use .venv/bin/python): {bare}'


@pytest.fixture(scope='module')
def clone(tmp_path_factory, checkpoints):
    """A clean copy of the checkout, set up, with an offline environment. Returns (directory, env)."""
    base = tmp_path_factory.mktemp('docs')
    work = base / 'clone'
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split('\0')
    for name in filter(None, listed):
        source = ROOT / name
        if name == '.venv' or name.startswith('.venv/') or not source.is_file():
            continue  # the venv link of a work tree; files deleted but not yet committed
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, work / name)
    (work / '.venv').symlink_to(Path(sys.prefix), target_is_directory=True)
    hub = base / 'torch' / 'hub' / 'checkpoints'
    hub.mkdir(parents=True)
    release = hub / 'TimeSformer_divST_8x32_224_K400.pyth'  # random weights under the release name
    try:
        os.link(checkpoints['pyth'], release)  # 0.5 GB: a link where the file system allows one
    except OSError:
        shutil.copy(checkpoints['pyth'], release)
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'RAY_ADDRESS', 'PYTHONWARNINGS')}
    env.update(TOWHEE_HOME=str(base / 'towhee'), TORCH_HOME=str(base / 'torch'), XDG_CACHE_HOME=str(base / 'cache'),
               TIMESFORMER_BENCH_CACHE=str(base / 'bench'), TIMESFORMER_WEIGHTS_BASE_URL='http://127.0.0.1:9')
    subprocess.run(['bash', 'scripts/setup.sh'], cwd=work, env=env, check=True, capture_output=True)
    yield work, env
    # setup.sh made the shared virtualenv's editable install of timesformer_video point at the copy, as it must for
    # a new clone; point it back at this checkout for the tests that follow.
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--no-deps',
                    '--no-build-isolation', '-e', str(ROOT)], check=True, capture_output=True)


@pytest.mark.parametrize('doc', [doc for doc in DOCS if steps(doc)], ids=lambda doc: str(doc.relative_to(ROOT)))
def test_the_commands_of_a_document_run_as_written(clone, doc, tmp_path):
    work, env = clone
    todo = steps(doc)
    (tmp_path / 'steps.json').write_text(json.dumps(todo))
    (tmp_path / 'driver.py').write_text(DRIVER)
    result = subprocess.run([str(work / '.venv' / 'bin' / 'python'), str(tmp_path / 'driver.py'),
                             str(tmp_path / 'steps.json'), str(tmp_path / 'report.json')],
                            cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and 'FAILED: ' not in result.stdout, (result.stdout + result.stderr)[-6000:]
    report = json.loads((tmp_path / 'report.json').read_text())
    print(''.join(f'{step["seconds"]:7.1f} s  {step["where"]}\n' for step in report))  # where the time goes, with -s
    assert [step['where'] for step in report] == [step['where'] for step in todo]
    for step in report:
        if 'demo.sh' in step['code'] or 'setup.sh' in step['code']:
            assert 'pkg_resources' not in step['output'], f'{step["where"]}: the deprecation warning is back'
