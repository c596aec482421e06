"""`scripts/videos.py` as a user meets it: argument errors, the failure summary and exit status, Ray's console.

Exit statuses (jobs/cli.py): 0 done, 1 the job could not run, 2 a bad argument (one line, before any model or
database is touched), 3 `index` finished but the output records failed videos.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, TINY_CFG, videos_py

from timesformer_video.synthetic import make_video


@pytest.fixture(scope='module')
def clips(tmp_path_factory, tiny_weights):
    root = tmp_path_factory.mktemp('cli')
    for i in range(2):
        make_video(root / 'clips' / f'clip{i}.mp4', n_frames=6, size=(96, 64), fps=6, seed=i)
    (root / 'clips' / 'broken.mp4').write_bytes(b'not a video' * 30)
    (root / 'tiny.json').write_text(json.dumps(TINY_CFG))
    return root


@pytest.mark.parametrize('args, complaint', [
    (['search', 'q.mp4', '--milvus', 'v.db', '-k', '0'],
     "Invalid value for '-k': expected an integer 1<=x<=16384, got 0"),
    (['search', 'q.mp4', '--milvus', 'v.db', '--topk', '-1'],
     "Invalid value for '--topk': expected an integer x>=1, got -1"),
    (['search', 'clips/clip0.mp4', '--milvus', 'nothing_here.db'], 'no Milvus Lite database there'),
    (['search', 'missing.mp4', '--milvus', 'v.db'], 'missing.mp4: query video not found'),
    (['search', 'clips/clip0.mp4', '--milvus', 'videos'], 'a path ending in .db'),
    (['index', 'clips', '--out', 'r.parquet', '--workers', '0'],
     "Invalid value for '--workers': expected an integer x>=1, got 0"),
    (['index', 'clips', '--out', 'r.parquet', '--chunk-seconds', 'nan'],
     "Invalid value for '--chunk-seconds': expected a finite number x>0, got nan"),
    (['index', 'clips', '--out', 'r.parquet', '--cpus-per-worker', '0'], 'expected a finite number x>0, got 0'),
    (['index', 'clips', '--out', 'r.parquet', '--clip-batch', 'x'],
     "Invalid value for '--clip-batch': expected an integer x>=1, got x"),
    (['index', 'clips', '--out', 'r.parquet', '--weights', 'nope.pth'], 'weights file not found'),
    (['index', 'clips', '--out', 'r.parquet', '--model-cfg', 'nope.json'],
     "Invalid value for '--model-cfg': File 'nope.json' does not exist."),
    # Every option says what it accepts (exit 2), also where only the model's record or Milvus knows the range.
    (['index', 'clips', '--out', 'r.parquet', '--model-cfg', 'tiny.json', '--window', '0.0004'],
     # the operator's own rule (windows.check_window)
     "Invalid value for '--window' / '--stride': window must be at least 0.001 s"),
    (['index', 'clips', '--out', 'r.parquet', '--model-cfg', 'tiny.json', '--topk', '401'],
     "Invalid value for '--topk': expected an integer 1<=x<=400 (the labels of timesformer_tiny_test), got 401"),
    (['search', 'clips/clip0.mp4', '--milvus', 'v.db', '-k', '20000'],
     "Invalid value for '-k': expected an integer 1<=x<=16384, got 20000"),
    (['index', 'clips', '--out', 'r.parquet', '--chunk-seconds', 'inf'], 'expected a finite number x>0, got inf'),
    (['index', 'clips', '--out', 'r.parquet', '--gpus-per-worker', 'inf'],
     "Invalid value for '--gpus-per-worker': expected a finite number x>=0, got inf"),
    (['index', 'clips', '--out', 'r.parquet', '--milvus', 'v.db', '--collection', 'my-videos'],
     'a Milvus collection name is 1 to 255 letters, digits and underscores'),
    (['index', 'clips', '--out', 'r.parquet', '--model-name', 'nope'], "unknown model_name 'nope'; supported: "),
    (['index', 'clips', '--out', 'r.parquet', '--model-cfg', 'clips/broken.mp4'], 'broken.mp4: not valid JSON'),
    (['index', 'clips', '--out', 'r.parquet', '--device', 'tpu'], "device must be 'cpu', 'cuda', 'cuda:N'"),
    (['index', 'clips', '--out', 'r.parquet', '--device', 'cpu', '--precision', 'fp16'],
     "precision='fp16' is slower than fp32 on the CPU"),
    (['index', 'clips', '--out', 'clips'], "Invalid value for '--out': File 'clips' is a directory."),
    (['index', 'clips', '--out', 'r.csv'], 'results are written as Parquet (.parquet) or JSON lines (.jsonl)'),
    (['index', 'clips', '--out', 'tiny.json/r.parquet'], 'tiny.json is a file, not a folder'),
    (['search', 'clips/clip0.mp4', '--milvus', 'v.db', '--moments', '--html', 'clips'],
     "Invalid value for '--html': File 'clips' is a directory."),
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


# ---- every option's range, as the command line states it (the specification; click writes `x>=1`, `0<=x<=1`) ----
NUMBER_OPTIONS = {  # (command, option): (the accepted range as the message names it, values outside it)
    ('index', '--chunk-size'): ('an integer x>=1', '0'), ('index', '--chunk-seconds'): ('a finite number x>0', '0'),
    ('index', '--window'): ('a finite number x>0', '0'), ('index', '--stride'): ('a finite number x>0', '-1'),
    ('index', '--decode-workers'): ('an integer x>=1', '0'), ('index', '--batch-size'): ('an integer x>=1', '-2'),
    ('index', '--workers'): ('an integer x>=1', '0'), ('index', '--cpus-per-worker'): ('a finite number x>0', '0'),
    ('index', '--gpus-per-worker'): ('a finite number x>=0', '-0.5'), ('index', '--topk'): ('an integer x>=1', '0'),
    ('index', '--clip-batch'): ('an integer x>=1', '0'),
    ('search', '-k'): ('an integer 1<=x<=16384', '0', '16385'), ('search', '--start'): ('a finite number x>=0', '-1'),
    ('search', '--end'): ('a finite number x>=0', '-0.001'),
    ('search', '--min-score'): ('a finite number 0<=x<=1', '-0.1', '1.01'),
    ('search', '--topk'): ('an integer x>=1', '0'), ('search', '--clip-batch'): ('an integer x>=1', '0'),
    ('explain', '--start'): ('a finite number x>=0', '-1'), ('explain', '--end'): ('a finite number x>0', '0'),
    ('explain', '--topk'): ('an integer x>=1', '0'), ('explain', '--clip-batch'): ('an integer x>=1', '0'),
    ('make-video', '--seconds'): ('a finite number x>0', '0'), ('make-video', '--frames'): ('an integer x>=1', '0'),
    ('make-video', '--fps'): ('an integer x>=1', '0'), ('make-video', '--gop'): ('an integer x>=1', '0'),
    ('watch', '--window'): ('a finite number x>0', '0'), ('watch', '--stride'): ('a finite number x>0', '-1'),
    ('watch', '--duration'): ('a finite number x>0', '0'), ('watch', '--timeout'): ('a finite number x>0', '0'),
    ('watch', '--reconnect-timeout'): ('a finite number x>0', '-1'), ('watch', '--waiting'): ('an integer x>=1', '0'),
    ('watch', '--topk'): ('an integer x>=1', '0'),
}
NOT_NUMBERS = ('x', 'nan', 'inf', '-inf', '1e999')
CHOICE_OPTIONS = {
    ('index', '--format'): ('parquet', 'jsonl'), ('index', '--engine'): ('local', 'ray'),
    ('index', '--seek'): ('exact', 'keyframes'), ('index', '--num-crops'): ('1', '3'),
    ('index', '--sampling'): ('uniform', 'clip'), ('index', '--precision'): ('fp32', 'bf16', 'fp16', 'int8'),
    ('explain', '--method'): ('rollout', 'gradient'),
    ('make-video', '--codec'): ('ffv1', 'h264', 'hevc', 'mpeg4', 'vp9'),
    ('watch', '--rtsp-transport'): ('tcp', 'udp'),
}
REQUIRED = {'index': ['v.mp4', '--out', 'r.parquet'], 'search': ['q.mp4', '--milvus', 'v.db'],
            'explain': ['v.mp4', '--out', 'm.png'], 'make-video': ['out.mp4'],
            'watch': ['udp://127.0.0.1:9', '--window', '1']}


def _cli_run(capsys, monkeypatch, tmp_path, argv):
    from timesformer_video.jobs import cli

    monkeypatch.chdir(tmp_path)
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize('command, option', sorted(NUMBER_OPTIONS))
def test_every_bad_number_of_every_option_exits_2_naming_the_accepted_range(command, option, capsys, monkeypatch,
                                                                             tmp_path):
    accepted, *outside = NUMBER_OPTIONS[command, option]
    integer = accepted.startswith('an integer')
    for value in [*outside, *NOT_NUMBERS, *(['1.5'] if integer else [])]:
        status, out, err = _cli_run(capsys, monkeypatch, tmp_path, [command, *REQUIRED[command], option, value])
        assert status == 2, (value, err)
        assert err.splitlines() == [f"timesformer-videos {command}: error: Invalid value for '{option}': expected "
                                    f'{accepted}, got {value} (see timesformer-videos {command} --help)'], err
        assert out == '' and os.listdir(tmp_path) == []


@pytest.mark.parametrize('command, option', sorted(CHOICE_OPTIONS))
def test_a_value_that_is_not_a_choice_exits_2_naming_the_choices(command, option, capsys, monkeypatch, tmp_path):
    status, out, err = _cli_run(capsys, monkeypatch, tmp_path, [command, *REQUIRED[command], option, 'bogus'])
    assert status == 2 and len(err.splitlines()) == 1, err
    assert f"Invalid value for '{option}': 'bogus' is not one of " in err
    assert all(f"'{choice}'" in err for choice in CHOICE_OPTIONS[command, option]), err


def test_the_tables_above_cover_every_number_and_choice_option():
    """A new option needs its range or choices stated here."""
    import click

    from timesformer_video.jobs import cli

    numbers, choices = set(), set()
    for name, command in cli.cli.commands.items():
        for param in command.params:
            flag = (name, max(param.opts, key=len))
            if isinstance(param.type, (click.IntRange, click.FloatRange)):
                numbers.add(flag)
            elif isinstance(param.type, click.Choice):
                choices.add(flag)
    model_choices = {('search', '--num-crops'), ('search', '--sampling'), ('search', '--precision'),
                     ('explain', '--num-crops'), ('explain', '--sampling'), ('explain', '--precision'),
                     ('watch', '--num-crops'), ('watch', '--sampling'), ('watch', '--precision')}
    assert numbers == set(NUMBER_OPTIONS)
    assert choices - model_choices == set(CHOICE_OPTIONS)


@pytest.mark.parametrize('command', ['index', 'search', 'explain', 'random-weights', 'make-video', 'watch'])
def test_help_of_each_command_runs_and_names_its_options(command, capsys, monkeypatch, tmp_path):
    status, out, err = _cli_run(capsys, monkeypatch, tmp_path, [command, '--help'])
    assert status == 0 and err == ''
    assert out.startswith(f'Usage: timesformer-videos {command} [OPTIONS]')
    assert all(option in out for (name, option) in {**NUMBER_OPTIONS, **CHOICE_OPTIONS} if name == command)


def test_the_installed_command_lists_every_command():
    result = subprocess.run([str(ROOT / '.venv' / 'bin' / 'timesformer-videos'), '--help'], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ('index', 'search', 'explain', 'random-weights', 'make-video', 'watch'):
        assert f'  {command} ' in result.stdout


def test_make_video_writes_the_video_asked_for(tmp_path):
    """Checked against PyAV's reading of the file (frames, size, codec, rate)."""
    import av

    result = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'make_video.py'), 'v.mp4', '--frames', '7',
                             '--size', '64x48', '--fps', '7', '--codec', 'mpeg4'], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / 'v.mp4') or result.stdout.strip() == 'v.mp4'
    with av.open(str(tmp_path / 'v.mp4')) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert (len(frames), stream.codec_context.name, stream.average_rate) == (7, 'mpeg4', 7)
        assert (frames[0].width, frames[0].height) == (64, 48)
    bad = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'make_video.py'), 'w.mp4', '--size', '64'],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and 'expected WIDTHxHEIGHT' in bad.stderr and not (tmp_path / 'w.mp4').exists()


# ---- the settings record ----

def test_index_job_diff_names_each_differing_field_with_both_values():
    from timesformer_video.jobs.operators import OperatorSpec
    from timesformer_video.jobs.runner import IndexJob as FromRunner
    from timesformer_video.jobs.settings import IndexJob

    assert FromRunner is IndexJob  # old imports keep working
    job = IndexJob(['a.mp4'], 'r.parquet')
    assert job.diff(IndexJob('a.mp4', 'r.parquet')) == {}
    other = IndexJob(['a.mp4', 'b.mp4'], 'r.parquet', OperatorSpec(topk=3), batch_size=8, seek='keyframes',
                     decode_workers=4)
    assert job.diff(other) == {'inputs': (('a.mp4',), ('a.mp4', 'b.mp4')), 'decode_workers': (None, 4),
                               'batch_size': (1, 8), 'seek': ('exact', 'keyframes'), 'spec.topk': (5, 3)}
    assert other.diff(job)['seek'] == ('keyframes', 'exact')
    with pytest.raises(TypeError, match='diff compares two IndexJobs'):
        job.diff({'out': 'r.parquet'})


@pytest.mark.parametrize('fields, message', [
    (dict(decode_workers=0), 'decode_workers must be an integer of at least 1, got 0'),
    (dict(batch_size=True), 'batch_size must be an integer of at least 1, got True'),
    (dict(batch_size=2.0), 'batch_size must be an integer of at least 1, got 2.0'),
    (dict(seek='fast'), "seek must be one of 'exact', 'keyframes', got 'fast'"),
    (dict(chunk_seconds=float('inf')), 'chunk_seconds must be a positive number of seconds'),
    (dict(cpus_per_worker=0), 'cpus_per_worker must be a positive number'),
    (dict(gpus_per_worker=-1), 'gpus_per_worker must be a finite number of at least 0'),
])
def test_index_job_refuses_new_settings_out_of_range(fields, message):
    from timesformer_video.jobs.settings import IndexJob

    with pytest.raises(ValueError, match=message.replace('(', r'\(')):
        IndexJob(['a.mp4'], 'r.parquet', **fields)


def test_the_command_line_builds_the_job_it_was_given(monkeypatch, tmp_path):
    """Every index option reaches the IndexJob (the record the engines read)."""
    from timesformer_video.jobs import cli, runner

    jobs = []

    def run_index(job):  # stands for the engines: the job as they would get it, then Ctrl-C
        jobs.append(job)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, 'run_index', run_index)
    monkeypatch.chdir(tmp_path)
    status = cli.main(['index', 'a.mp4', '--out', 'r.parquet', '--decode-workers', '3', '--batch-size', '16',
                       '--seek', 'keyframes', '--workers', '4', '--cpus-per-worker', '2', '--chunk-size', '5',
                       '--no-progress'])
    assert status == 130
    assert jobs[0].diff(runner.IndexJob(['a.mp4'], 'r.parquet', progress=False)) == {
        'workers': (4, 2), 'cpus_per_worker': (2.0, 1), 'decode_workers': (3, None), 'batch_size': (16, 1),
        'seek': ('keyframes', 'exact'), 'chunk_size': (5, 32), 'collection': ('videos', None)}


# ---- checks.py: one definition of each check, against independent definitions ----

def test_count_accepts_exactly_the_integers_from_the_minimum():
    from hypothesis import given
    from hypothesis import strategies as st

    from timesformer_video.jobs import checks

    @given(st.one_of(st.integers(), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3)),
           st.integers(-5, 5))
    def check(value, minimum):
        accepted = type(value) is int and value >= minimum
        if accepted:
            assert checks.count('n', value, minimum) == value
        else:
            with pytest.raises(ValueError, match=f'n must be an integer of at least {minimum}, got'):
                checks.count('n', value, minimum)
    check()


def test_positive_and_at_least_accept_exactly_the_finite_numbers_in_range():
    import fractions

    from hypothesis import given
    from hypothesis import strategies as st

    from timesformer_video.jobs import checks

    @given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.fractions(),
                     st.booleans(), st.none()), st.integers(-3, 3))
    def check(value, minimum):
        number = type(value) in (int, float, fractions.Fraction)
        finite = number and abs(value) < float('inf')  # NaN compares false
        for accepted, call in [(finite and value > 0, lambda: checks.positive('x', value)),
                               (finite and value >= minimum, lambda: checks.at_least('x', value, minimum))]:
            if accepted:
                assert call() == value
            else:
                with pytest.raises(ValueError, match='x must be a'):
                    call()
    check()


def test_is_url_agrees_with_urllib_on_scheme_and_authority():
    """A URL is what urllib.parse splits into a scheme (more than one character: `C:` is a drive) followed by `//`."""
    import urllib.parse

    from hypothesis import given
    from hypothesis import strategies as st

    from timesformer_video.jobs import checks

    scheme = st.text(alphabet='aZ9+.-_é:/', min_size=0, max_size=6)
    rest = st.text(alphabet='ab/.:? é', max_size=8)

    @given(st.one_of(st.builds(lambda s, r: f'{s}://{r}', scheme, rest), st.builds(str.__add__, scheme, rest)))
    def check(text):
        parts = urllib.parse.urlsplit(text)
        expected = len(parts.scheme) > 1 and text[len(parts.scheme):].startswith('://')
        assert checks.is_url(text) == expected, parts
    check()
    assert [checks.is_url(t) for t in ('http://h/a.mp4', 's3://b/k', 'file:///x', 'C://x', '/a://b', 'a.mp4')] == \
        [True, True, True, False, False, False]


def test_settings_differences_are_what_a_refused_resume_prints():
    """One definition of "which settings differ", used by the output's and the Milvus collection's refusals."""
    from timesformer_video.jobs.settings import describe, differences

    saved = {'model_name': 'm', 'topk': 1, 'options': {'num_crops': 1}}
    current = {'topk': 5, 'model_name': 'm', 'options': {'num_crops': 3}, 'weights_sha256': 'ab'}
    assert differences(saved, current) == {'topk': (1, 5), 'options': ({'num_crops': 1}, {'num_crops': 3}),
                                           'weights_sha256': (None, 'ab')}
    assert differences(current, current) == {}
    assert describe(differences(saved, current)).splitlines() == [
        '  topk: 1 there, 5 in this run', '  options: {"num_crops": 1} there, {"num_crops": 3} in this run',
        '  weights_sha256: null there, "ab" in this run']
