"""Index a video collection (classify + embed, resumable, local or Ray) and search it in Milvus.

    timesformer-videos index VIDEOS... --out results.parquet [--milvus ./videos.db] [--engine ray]
    timesformer-videos search VIDEO --milvus ./videos.db -k 5
    timesformer-videos index VIDEOS... --out moments.parquet --window 4 [--stride 2] --milvus ./videos.db
    timesformer-videos search CLIP --milvus ./videos.db --moments -k 5 [--start S --end S] [--html hits.html]
    timesformer-videos explain VIDEO [--start S --end S] [--label NAME] --out maps.png
    timesformer-videos random-weights weights.pth
    timesformer-videos make-video clip.mp4 --seconds 10

The package's command (click); `python scripts/videos.py ...` is the same.

Exit status: 0 done; 2 a bad argument (one line, before anything is loaded: click's types and the pre-flight checks
below raise click.UsageError); 1 the job could not run (weights, settings, output state); 3 `index` finished but its
output records videos that failed (a summary is printed); 130 interrupted.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import re
import sys
import types
import warnings

import click

from ..errors import CheckpointError, WeightsUnavailableError
from ..synthetic import ENCODERS
from .checks import before, is_url
from .errors import JobError
from .moments import MAX_LIMIT
from .operators import DEFAULT_MODEL, OperatorSpec, read_model_cfg
from .settings import ENGINES, FORMATS, SEEK_MODES, IndexJob

EXIT_JOB_ERROR = 1  # the job could not run (weights, settings, output state); each video's failure is not one
EXIT_USAGE = 2  # a bad argument, found before any heavy work (click's own status for usage errors)
EXIT_IN_USE = 2  # a file the job needs (the output, a Milvus Lite .db) is held by another process: errors.InUseError
EXIT_VIDEOS_FAILED = 3  # `index` completed, but the output records at least one video with an error
EXIT_INTERRUPTED = 130
FAILURES_SHOWN = 5  # failed paths listed in the summary; the rest are in the output's error column
_COLLECTION_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]{0,254}')


# ---- types: every refused value is a usage error that names what is accepted ----

class _Range:
    """click's IntRange/FloatRange, but any refused value (not a number, out of range, NaN, infinite) gets one
    message naming the accepted range: `expected an integer x>=1, got 0`."""

    kind = 'a number'

    def convert(self, value, param, ctx):
        try:
            number = super().convert(value, param, ctx)
        except click.BadParameter:
            number = None
        if number is None or not math.isfinite(number):
            self.fail(f'expected {self.kind} {self._describe_range()}, got {value}', param, ctx)
        return number


class Count(_Range, click.IntRange):
    """An integer from `min` (default 1) to `max` (default none)."""

    kind = 'an integer'

    def __init__(self, min: int = 1, max: int | None = None):  # noqa: A002 - click's names
        super().__init__(min, max)


class Number(_Range, click.FloatRange):
    """A finite number in a range (`min_open`: more than `min`, not equal to it)."""

    kind = 'a finite number'


POSITIVE = Number(0, min_open=True)  # a positive amount (CPU cores)
SECONDS = POSITIVE  # a duration in seconds
TIME = Number(0)  # a time in a video, seconds from its start


def _default(name: str):
    """IndexJob's default of a field: the record is the one home of the defaults."""
    return next(field.default for field in dataclasses.fields(IndexJob) if field.name == name)


def _collection_name(ctx, param, value):
    if value is not None and not _COLLECTION_NAME.fullmatch(value):
        raise click.BadParameter(f'{value!r}: a Milvus collection name is 1 to 255 letters, digits and '
                                 f'underscores, starting with a letter or an underscore')
    return value


def _milvus_uri(ctx, param, value):
    from .milvus_store import resolve_uri

    if value is not None:
        try:
            resolve_uri(value)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    return value


def _num_crops(ctx, param, value):
    return None if value is None else int(value)


# ---- options shared by several commands ----

def _model_options(command):
    options = [
        click.option('--model-name', default=None,
                     help=f'a zoo model name (default {DEFAULT_MODEL}, or the name in --model-cfg)'),
        click.option('--weights', default=None,
                     help='checkpoint file or HF save_pretrained directory; default: the released file from '
                          "torch's hub cache (downloaded there if missing)"),
        click.option('--model-cfg', default=None, metavar='JSON', type=click.Path(exists=True, dir_okay=False),
                     help='register an extra model record first: {"name": ..., "base": <zoo name>, '
                          '<ModelCfg field>: value, ...} (fine-tuned or smaller models)'),
        click.option('--topk', type=Count(), default=5,
                     help='labels and scores kept per video (default 5; at most the model\'s labels)'),
        click.option('--device', default=None, help="'cpu', 'cuda', 'cuda:1'; default CUDA when present"),
        click.option('--trust-checkpoint', is_flag=True,
                     help='allow torch.load(weights_only=False) for a checkpoint you trust (it runs its code)'),
        click.option('--num-crops', type=click.Choice(('1', '3')), default=None, callback=_num_crops,
                     help="1: centre crop (default); 3: the paper's three spatial crops (3x the compute)"),
        click.option('--sampling', type=click.Choice(('uniform', 'clip')), default=None,
                     help="uniform: frames spread over the whole video (default); clip: the paper's fixed-rate "
                          "clip from the middle"),
        click.option('--precision', type=click.Choice(('fp32', 'bf16', 'fp16', 'int8')), default=None,
                     help='fp32 (default); bf16/fp16 on CUDA; int8 on the CPU (see the operator docs)'),
        click.option('--clip-batch', type=Count(), default=1,
                     help='videos per model forward (op.batch; raise it on a GPU); 1 (default) makes every '
                          'row independent of how videos are grouped'),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _milvus_options(required: bool, mirror: bool = False):
    def add(command):
        options = [
            click.option('--milvus', required=required, default=None, metavar='URI', callback=_milvus_uri,
                         help='Milvus Lite file (./videos.db, embedded) or server URI (http://host:19530)'
                              + ('. The collection mirrors --out: after the run it holds exactly the processed '
                                 'rows of that one file (others are removed), and indexing another --out or other '
                                 'settings into it is refused' if mirror else '')),
            click.option('--collection', default=None, callback=_collection_name,
                         help='collection name (default videos; moments with --window or --moments)'),
            click.option('--milvus-token', default=None, help='server token (user:password); or MILVUS_TOKEN'),
        ]
        for option in reversed(options):
            command = option(command)
        return command
    return add


def program() -> str:
    """The name the user ran this command by: `videos.py` (the script) or `timesformer-videos` (the package's)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ''
    return name if name in ('videos.py', 'timesformer-videos') else 'timesformer-videos'


@click.group(context_settings={'help_option_names': ['-h', '--help']},
             help=__doc__.split('\n\n')[0])
def cli():
    pass


# ---- the commands: each parses (click), checks what click cannot see (pre-flight), then runs ----

@cli.command('index', short_help='classify and embed videos into Parquet/JSONL (and Milvus); resumes where it stopped')
@click.argument('inputs', nargs=-1, required=True, metavar='VIDEOS...')
@click.option('--out', required=True, type=click.Path(dir_okay=False),
              help='output file: results.parquet (default format) or .jsonl')
@click.option('--format', 'format', type=click.Choice(FORMATS), default=None,
              help='output format; default from the --out extension (.jsonl -> jsonl), else parquet')
@click.option('--chunk-size', type=Count(), default=_default('chunk_size'), show_default=True,
              help='videos per atomically written chunk: at most this many are redone after a kill')
@click.option('--chunk-seconds', type=SECONDS, default=_default('chunk_seconds'), show_default=True,
              help='also write a chunk when this many seconds passed since the last one')
@click.option('--retry-failed', is_flag=True, help='process again the videos recorded with an error')
@click.option('--overwrite', is_flag=True,
              help='discard the existing output and unfinished state instead of resuming (with --milvus, the '
                   'collection then mirrors the new output: videos no longer in it are removed)')
@click.option('--no-progress', is_flag=True, help='no progress bar')
@click.option('--window', type=SECONDS, default=None, metavar='SECONDS',
              help='moments: window length in seconds (whole ms); one row (and Milvus entity) per window, with '
                   'start_ms and end_ms, holding the frames shown in [start_ms, end_ms) (see docs/moments.md)')
@click.option('--stride', type=SECONDS, default=None, metavar='SECONDS',
              help="moments: seconds from one window's start to the next (default: the window, no overlap)")
@click.option('--engine', type=click.Choice(ENGINES), default=_default('engine'), show_default=True,
              help='local: this process and its decoding workers; ray: decode tasks and a model actor pool')
@click.option('--decode-workers', type=Count(), default=_default('decode_workers'),
              help='decoding processes (local) or concurrent decode tasks (Ray); default: the rule in '
                   'docs/batch_jobs.md')
@click.option('--batch-size', type=Count(), default=_default('batch_size'), show_default=True,
              help='clips per model forward, gathered across videos')
@click.option('--seek', type=click.Choice(SEEK_MODES), default=_default('seek'), show_default=True,
              help='exact: the frames the sampling asks for; keyframes: the keyframe at or before each (faster, '
                   'approximate)')
@click.option('--workers', type=Count(), default=_default('workers'), show_default=True,
              help='Ray: model replicas')
@click.option('--ray-address', default=None,
              help='Ray: join this cluster (e.g. ray://head:10001 or auto); default RAY_ADDRESS if set, else start '
                   'a local Ray')
@click.option('--cpus-per-worker', type=POSITIVE, default=_default('cpus_per_worker'),
              show_default=True, help='Ray: CPU cores per replica')
@click.option('--gpus-per-worker', type=Number(0), default=None,
              help='Ray: GPUs per replica; default 1 when the cluster has GPUs, else 0')
@click.option('--verbose', is_flag=True,
              help="Ray: show Ray's own log lines (start-up notices, core-worker messages); default quiet")
@_milvus_options(required=False, mirror=True)
@_model_options
def index_command(**params) -> int:
    """Classify and embed every video; one row per video (or per window with --window). Re-running the same
    command resumes: done videos are skipped. In-progress state lives in OUT.parts/ beside OUT.

    VIDEOS: video files, directories (searched recursively by video extension), globs (quote them:
    'clips/**/*.mp4'), URLs, or .txt/.lst files listing paths/URLs one a line.
    """
    args = _args('index', params)
    _check_model_files(args)
    _check_out(args)
    _check_model(args)
    _check_windows(args)
    if args.engine == 'ray' and not args.verbose:
        _quiet_ray()
    return _run(_index, args)


@cli.command('search', short_help='embed a video and list the most similar indexed videos (or moments)')
@click.argument('video')
@click.option('-k', 'k', type=Count(1, MAX_LIMIT), default=5,
              help=f"how many results (default 5, at most {MAX_LIMIT}, Milvus's largest search)")
@click.option('--json', is_flag=True, help='print JSON instead of a table')
@click.option('--moments', is_flag=True,
              help='list moments (path, start-end, similarity): windows of a collection indexed with --window (in '
                   'one of whole videos, each video is one); overlapping windows of one video that are both hits are '
                   'merged (default collection: moments)')
@click.option('--start', type=TIME, default=None, metavar='S',
              help='embed only the frames of VIDEO shown from S seconds on (exact times, the rule of the windows; '
                   'default: its start)')
@click.option('--end', type=TIME, default=None, metavar='S',
              help='embed only the frames of VIDEO shown before S seconds (default: its end)')
@click.option('--label', default=None, metavar='NAME', help='moments: only those whose top label is NAME')
@click.option('--min-score', type=Number(0, 1), default=None, metavar='P',
              help="moments: only those whose top label's score is at least P (0..1)")
@click.option('--html', default=None, metavar='OUT.html', type=click.Path(dir_okay=False),
              help="moments: also write a page with a thumbnail strip of each hit's frames and its time range")
@click.option('--maps', is_flag=True,
              help="with --html: also draw over each hit's frames the attention map of its similarity to the query "
                   '(op.explain, gradient; about 3 forward passes per hit)')
@_milvus_options(required=True)
@_model_options
def search_command(**params) -> int:
    """Embed VIDEO with the model used for indexing and list the k nearest indexed videos (or moments, with
    --moments). distance is the cosine similarity (1 = same direction, higher is more similar)."""
    args = _args('search', params)
    _check_query(args)
    _check_model_files(args)
    _check_html(args)
    _check_model(args)
    _check_database(args)
    return _run(_search, args)


@cli.command('explain', short_help="draw where the model looked: a video's frames with their attention maps")
@click.argument('video')
@click.option('--out', required=True, metavar='MAPS.png', type=click.Path(dir_okay=False),
              help='the picture: .png (a grid of the frames), .gif or .webp (an animation)')
@click.option('--start', type=TIME, default=None, metavar='S',
              help='only the part of VIDEO from S seconds (default: its start)')
@click.option('--end', type=SECONDS, default=None, metavar='S',
              help='only the part of VIDEO before S seconds (default: its end)')
@click.option('--label', default=None, metavar='NAME', help='the label to explain (default: the top one)')
@click.option('--method', type=click.Choice(('rollout', 'gradient')), default=None,
              help="rollout (default: attention rollout, the same map for every label) or gradient (attention "
                   "weighted by the label's gradient)")
@_model_options
def explain_command(**params) -> int:
    """Classify one clip of VIDEO (its centre crop) and save its frames with the space-time attention map of a
    label drawn over them (op.explain; the formulas are in docs/explain.md)."""
    from ..explain import IMAGE_FORMATS

    args = _args('explain', params)
    _check_video(args.video, 'video not found')
    if os.path.splitext(args.out)[1].lower() not in IMAGE_FORMATS:
        raise click.BadParameter(f'{args.out}: name the picture with one of {", ".join(IMAGE_FORMATS)}',
                                 param_hint="'--out'")
    _check_range(args)
    _check_model_files(args)
    return _run(_explain, args)


@cli.command('random-weights', short_help='write randomly initialised weights (to try the pipeline offline)')
@click.argument('path', type=click.Path(dir_okay=False))
@click.option('--model-name', default=None, help=f'default {DEFAULT_MODEL}, or the name in --model-cfg')
@click.option('--model-cfg', default=None, metavar='JSON', type=click.Path(exists=True, dir_okay=False),
              help='as for index')
@click.option('--seed', type=int, default=0, show_default=True)
def random_weights_command(**params) -> int:
    """Write a plain state dict of a randomly initialised model of the exact shape, for trying the pipeline or
    measuring speed where the released weights cannot be downloaded. Its labels and embeddings mean nothing."""
    return _run(_random_weights, _args('random-weights', params))


@cli.command('make-video', short_help='write a synthetic test video whose frames carry their index')
@click.argument('out', type=click.Path(dir_okay=False))
@click.option('--seconds', type=SECONDS, default=None, help='length (default 10 s unless --frames)')
@click.option('--frames', 'n_frames', type=Count(), default=None, help='number of frames (instead of --seconds)')
@click.option('--size', default='320x240', show_default=True, callback=lambda ctx, param, value: _size(value),
              help='WIDTHxHEIGHT')
@click.option('--fps', type=Count(), default=25, show_default=True)
@click.option('--codec', type=click.Choice(sorted(ENCODERS)), default='h264',
              show_default=True)
@click.option('--gop', type=Count(), default=12, show_default=True, help='frames from one keyframe to the next')
@click.option('--pix-fmt', default='yuv420p', show_default=True)
@click.option('--no-bframes', 'bframes', is_flag=True, flag_value=False, default=True, help='no B-frames')
@click.option('--vfr', is_flag=True, help='variable frame rate')
@click.option('--rotate', type=int, default=None, help='display rotation, degrees counter-clockwise')
@click.option('--sar', default=None, metavar='NUM:DEN', callback=lambda ctx, param, value: _ratio(value),
              help='sample aspect ratio (non-square pixels)')
@click.option('--audio', is_flag=True, help='add an audio stream')
@click.option('--faststart', is_flag=True, help='index (moov) at the start of the file')
@click.option('--seed', type=int, default=0, show_default=True)
def make_video_command(**params) -> int:
    """Write a deterministic synthetic video (a moving box over a drifting gradient; each frame carries its index
    as blocks along its top edge: timesformer_video.synthetic) and print its path."""
    from ..synthetic import make_video

    if params['seconds'] is None and params['n_frames'] is None:
        params['seconds'] = 10.0
    print(make_video(params.pop('out'), **params))
    return 0


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r'([1-9][0-9]*)x([1-9][0-9]*)', text.lower())
    if match is None:
        raise click.BadParameter(f'expected WIDTHxHEIGHT in pixels such as 320x240, got {text}')
    return int(match[1]), int(match[2])


def _ratio(text: str | None) -> tuple[int, int] | None:
    match = None if text is None else re.fullmatch(r'([1-9][0-9]*):([1-9][0-9]*)', text)
    if text is not None and match is None:
        raise click.BadParameter(f'expected NUM:DEN, two positive integers such as 4:3, got {text}')
    return None if match is None else (int(match[1]), int(match[2]))


def _args(command: str, params: dict) -> types.SimpleNamespace:
    """The parsed options of `command`, as attributes; `collection` defaults by the kind of rows."""
    args = types.SimpleNamespace(command=command, **params)
    if 'no_progress' in params:
        args.progress = not params['no_progress']
    if 'collection' in params and args.collection is None:
        moments = params.get('window') is not None or params.get('moments', False)
        args.collection = 'moments' if moments else 'videos'
    return args


def _run(work, args) -> int:
    """Run a command's work: a job-level failure is one `error:` line and its exit status, no traceback."""
    try:
        return work(args)
    except KeyboardInterrupt:
        print('interrupted: finished videos are saved; run the same command again to resume', file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - a job-level failure: one clear message, no traceback
        # These messages already say what went wrong and what to do; others get their type's name in front.
        plain = isinstance(e, (JobError, ValueError, WeightsUnavailableError, CheckpointError))
        message = str(e) if plain else f'{type(e).__name__}: {e}'
        if isinstance(e, WeightsUnavailableError):
            message += '\nOn the command line: --weights FILE_OR_DIR.'
        print(f'error: {message}', file=sys.stderr)
        return e.exit_code if isinstance(e, JobError) else EXIT_JOB_ERROR


def main(argv=None) -> int:
    """Run the command line (`argv`, default sys.argv[1:]); returns the exit status (see the module doc)."""
    warnings.filterwarnings('ignore', message='.*pkg_resources.*')  # towhee imports it
    try:
        return cli.main(args=argv, prog_name=program(), standalone_mode=False)
    except click.UsageError as e:  # a bad argument: one line, exit status 2
        where = e.ctx.command_path if e.ctx is not None else program()
        print(f'{where}: error: {e.format_message()} (see {where} --help)', file=sys.stderr)
        return EXIT_USAGE
    except click.Abort:  # Ctrl-C while click itself was reading
        return EXIT_INTERRUPTED


# ---- pre-flight checks: what click's types cannot see (files, the model's record, Milvus), before any model
# loads; each raises click.UsageError (exit status 2) ----

def _check_video(video: str, problem: str) -> None:
    """A URL, a file, or an image-sequence pattern (`frame%03d.png`: the decoder opens it as `ffmpeg -i` does)."""
    from ..decode import is_sequence_pattern

    path = os.path.expanduser(video)
    if not is_url(video) and not os.path.isfile(path) and not is_sequence_pattern(path):
        raise click.UsageError(f'{video}: {problem}')


def _check_query(args) -> None:
    """The query video, its time range, and the options that only moments have."""
    _check_video(args.video, 'query video not found')
    _check_range(args)
    if args.maps and args.html is None:
        raise click.UsageError('--maps draws on the page: add --html OUT.html')
    if not args.moments:
        used = [f'--{name.replace("_", "-")}' for name in ('label', 'min_score', 'html')
                if getattr(args, name) is not None]
        if used:
            raise click.UsageError(f'{", ".join(used)} filter or show moments: add --moments (and index with '
                                   f'--window)')


def _check_range(args) -> None:
    try:
        before(args.start, args.end)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _check_model_files(args) -> None:
    """--weights names a file or folder that is there (or a URL); --model-cfg is checked by its click.Path."""
    if args.weights is not None and not is_url(args.weights) and not os.path.exists(os.path.expanduser(args.weights)):
        raise click.BadParameter(f'{args.weights}: weights file not found (expected a checkpoint file or directory)',
                                 param_hint="'--weights'")


def _not_writable(path: str) -> str | None:
    """Why no file can be written at `path` (missing folders are made; a directory is refused by click.Path);
    None when one can."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path):
        return None if os.access(path, os.W_OK) else 'is not writable (permissions)'
    folder = os.path.dirname(path)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        return f'cannot be written: {folder} is a file, not a folder'
    if not os.access(folder, os.W_OK | os.X_OK):
        return f'cannot be written: the folder {folder} is not writable (permissions)'
    return None


def _check_out(args) -> None:
    """`index --out`: a file that can be written, in a format the job writes."""
    from .results import format_for

    problem = _not_writable(args.out)
    if problem is not None:
        raise click.BadParameter(f'{args.out} {problem}', param_hint="'--out'")
    try:
        format_for(args.out, args.format)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--out'") from None


def _check_html(args) -> None:
    problem = None if args.html is None else _not_writable(args.html)
    if problem is not None:
        raise click.BadParameter(f'{args.html} {problem}', param_hint="'--html'")


def _model_record(args):
    """The zoo record the model options name (--model-cfg registers it first, --model-name picks it)."""
    from ..zoo import get_cfg
    from .operators import register_model_cfg

    record = None
    if args.model_cfg is not None:
        try:
            record = read_model_cfg(args.model_cfg)
            register_model_cfg(record)
        except (ValueError, TypeError, OSError) as e:
            raise click.BadParameter(str(e), param_hint="'--model-cfg'") from None
    try:
        return get_cfg(args.model_name or (record['name'] if record else DEFAULT_MODEL))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--model-name'") from None


def _check_device(args) -> None:
    """--device names a device of this machine, and --precision runs on it."""
    from ..build import check_precision, resolve_device

    try:
        device = resolve_device(args.device)
        if args.precision is not None:
            check_precision(args.precision, device)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--device' / '--precision'") from None


def _check_model(args) -> None:
    """The model options against the model's record (--topk at most its labels) and this machine, before its
    weights are loaded."""
    cfg = _model_record(args)
    if args.topk > cfg.num_classes:
        raise click.BadParameter(f'expected an integer 1<=x<={cfg.num_classes} (the labels of {cfg.name}), got '
                                 f'{args.topk}', param_hint="'--topk'")
    _check_device(args)


def _check_windows(args) -> None:
    """`index --window/--stride`: the operator's own rule (whole ms, at least 1 ms)."""
    if args.stride is not None and args.window is None:
        raise click.UsageError('--stride needs --window: give the window length in seconds too')
    if args.window is not None:
        from ..windows import check_window

        try:
            check_window(args.window, args.stride)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--window' / '--stride'") from None


def _check_database(args) -> None:
    """`search --milvus`: a Milvus Lite database that exists (opening a missing one would create it)."""
    from .milvus_store import resolve_uri

    uri = resolve_uri(args.milvus)
    if not is_url(uri) and not os.path.exists(uri):
        raise click.BadParameter(f'{args.milvus}: no Milvus Lite database there; index videos into it first '
                                 f'({program()} index VIDEOS --out results.parquet --milvus {args.milvus})',
                                 param_hint="'--milvus'")


# ---- the work of each command ----

def _spec(args) -> OperatorSpec:
    model_cfg = read_model_cfg(args.model_cfg) if args.model_cfg else None
    name = args.model_name or (model_cfg['name'] if model_cfg else DEFAULT_MODEL)
    options = {key: getattr(args, key) for key in ('num_crops', 'sampling', 'precision')
               if getattr(args, key) is not None}
    window = getattr(args, 'window', None)
    if window is not None:  # moments; the stride is recorded too, so --window 4 and --window 4 --stride 4 agree
        options.update(window=window, stride=window if args.stride is None else args.stride)
    return OperatorSpec(model_name=name, weights=args.weights, topk=args.topk, device=args.device,
                        trust_checkpoint=args.trust_checkpoint, model_cfg=model_cfg, options=options,
                        clip_batch=args.clip_batch)


def _job(args) -> IndexJob:
    return IndexJob(args.inputs, args.out, _spec(args), fmt=args.format, engine=args.engine, workers=args.workers,
                    ray_address=args.ray_address, cpus_per_worker=args.cpus_per_worker,
                    gpus_per_worker=args.gpus_per_worker, decode_workers=args.decode_workers,
                    batch_size=args.batch_size, seek=args.seek, chunk_size=args.chunk_size,
                    chunk_seconds=args.chunk_seconds, milvus=args.milvus, collection=args.collection,
                    milvus_token=args.milvus_token, retry_failed=args.retry_failed, overwrite=args.overwrite,
                    progress=args.progress)


def _index(args) -> int:
    from .paths import readable
    from .runner import run_index

    summary = run_index(_job(args))
    line = (f'{readable(summary.out)}: {summary.total} videos, {summary.processed} processed now '
            f'({summary.failed} failed), {summary.skipped} already done; {summary.wall_s:.1f} s')
    if summary.processed:
        line += f', {summary.videos_per_s:.2f} videos/s'
    if summary.windows is not None:
        line += f'; {summary.windows} windows made now'
    if summary.milvus is not None:
        line += (f'; Milvus {args.collection}: {summary.milvus[0]} upserted, {summary.milvus[1]} removed '
                 f'(failed or no longer in the output)')
    print(line)
    failures = _failures(summary.out, args.format)
    if failures:
        _print_failures(failures, summary.out)
        return EXIT_VIDEOS_FAILED
    return 0


def _failures(out: str, fmt: str | None) -> list[tuple[str, str]]:
    """(path, error) of every video the finished output records as failed, in output order."""
    from .results import format_for, read_output, read_table

    if format_for(out, fmt) == 'parquet':
        table = read_table(out, columns=['path', 'error'])  # not the embeddings
        rows = zip(table['path'].to_pylist(), table['error'].to_pylist())
    else:
        rows = ((row['path'], row['error']) for row in read_output(out, fmt))
    return [(path, error) for path, error in rows if error is not None]


def _print_failures(failures: list[tuple[str, str]], out: str) -> None:
    """Count by error type (the `ErrorType: message` prefix the error column is written with), then the first few."""
    kinds = collections.Counter(error.split(':', 1)[0] for _, error in failures)
    by_kind = ', '.join(f'{kinds[kind]} {kind}' for kind in sorted(kinds, key=lambda kind: (-kinds[kind], kind)))
    lines = [f'{len(failures)} video{"s" * (len(failures) != 1)} failed ({by_kind}):']
    from .paths import display

    lines += [f'  {display(path)}: {error}' for path, error in failures[:FAILURES_SHOWN]]
    if len(failures) > FAILURES_SHOWN:
        lines.append(f'  ... and {len(failures) - FAILURES_SHOWN} more')
    lines.append(f'Every error is in the error column of {out}; fix the inputs and re-run with --retry-failed.')
    print('\n'.join(lines), file=sys.stderr)


def _search(args) -> int:
    from . import milvus_store
    from .errors import MilvusUnavailableError
    from .milvus_store import MilvusStore
    from .paths import display
    from .runner import embed

    spec = _spec(args)
    if not milvus_store.exists(args.milvus):  # opening it would create an empty database
        raise MilvusUnavailableError(f'no Milvus Lite database at {milvus_store.resolve_uri(args.milvus)}; index '
                                     f'videos into it first ({program()} index ... --milvus {args.milvus})')
    row = embed(args.video, spec, args.start, args.end)
    if args.moments:
        return _search_moments(args, spec, row)
    with MilvusStore(args.milvus, args.collection, args.milvus_token) as store:
        hits = store.search(row['feature'], args.k, spec.model_name, spec.signature(), per_video=True)
    if args.json:
        print(json.dumps({'query': row['path'], 'label': row['labels'][0], 'results': hits}, indent=1))
        return 0
    print(f'query: {display(row["path"])}  (top label {row["labels"][0]} {row["scores"][0]:.3f})')
    print(f'{"rank":>4}  {"distance":>8}  {"top label":<30} {"score":>6}  path')
    for rank, hit in enumerate(hits, 1):
        print(f'{rank:>4}  {hit["distance"]:8.4f}  {hit["label"][:30]:<30} {hit["score"]:6.3f}  '
              f'{display(hit["path"])}')
    return 0


def _explain(args) -> int:
    from ..errors import TimeRangeError
    from .errors import QueryRangeError
    from .operators import build_classifier, build_decoder

    try:
        frames = build_decoder(args.start, args.end).frames(args.video)  # raises where the range holds no frame
    except TimeRangeError as e:
        raise QueryRangeError(f'no frames to explain (--start/--end): {e}') from None
    explanation = build_classifier(_spec(args)).explain(frames, target=args.label, method=args.method)
    path = explanation.save(args.out)
    print(f'{path}: {explanation.title()}; frames {explanation.frame_indices}')
    return 0


def _search_moments(args, spec, row) -> int:
    from .milvus_store import MilvusStore
    from .moments import format_time, search_moments
    from .paths import display

    with MilvusStore(args.milvus, args.collection, args.milvus_token) as store:
        hits = search_moments(store, row['feature'], args.k, spec.model_name, spec.signature(), label=args.label,
                              min_score=args.min_score)
    if args.html is not None:
        from .moments_page import write_page

        query = row['path'] if args.start is None and args.end is None else \
            f'{row["path"]} [{args.start or 0:.15g} s, {"end" if args.end is None else f"{args.end:.15g} s"})'
        page = write_page(args.html, query, hits, maps=_hit_maps(spec, row['feature']) if args.maps else None)
        print(f'wrote {page}', file=sys.stderr)
    if args.json:
        print(json.dumps([{'path': h['path'], 'start_ms': h['start_ms'], 'end_ms': h['end_ms'],
                           'score': h['distance'], 'label': h['label'], 'label_score': h['score'],
                           'windows': h['windows']} for h in hits], indent=1))
        return 0
    print(f'query: {display(row["path"])}  (top label {row["labels"][0]} {row["scores"][0]:.3f})')
    print(f'{"rank":>4}  {"similarity":>10}  {"start":>9} - {"end":<9}  {"top label":<30} {"score":>6}  path')
    for rank, hit in enumerate(hits, 1):
        print(f'{rank:>4}  {hit["distance"]:10.4f}  {format_time(hit["start_ms"]):>9} - '
              f'{format_time(hit["end_ms"]):<9}  {hit["label"][:30]:<30} {hit["score"]:6.3f}  '
              f'{display(hit["path"])}')
    return 0


def _hit_maps(spec, feature):
    """hit -> JPEG bytes of its clip's frames with the map of their similarity to the query's `feature`."""
    import dataclasses

    import numpy as np

    from .moments_page import map_thumbnails
    from .operators import build_classifier
    from .paths import os_path

    clip_options = {k: v for k, v in spec.options.items() if k not in ('window', 'stride')}  # one clip per hit
    op = build_classifier(dataclasses.replace(spec, options=clip_options))
    target = np.asarray(feature, dtype=np.float32)
    return lambda hit: map_thumbnails(op, target, os_path(hit['path']), hit['start_ms'], hit['end_ms'])


def _quiet_ray() -> None:
    """Keep Ray's own Python notices off the console (`--verbose` shows them): the token-authentication notice
    printed at start-up and Ray Data's progress-bar notice. Warnings and errors of other Ray loggers still show."""
    for name in ('ray._private.authentication.authentication_token_setup', 'ray.data._internal.progress'):
        logging.getLogger(name).setLevel(logging.ERROR)


def _random_weights(args) -> int:
    from .operators import save_random_weights

    model_cfg = read_model_cfg(args.model_cfg) if args.model_cfg else None
    name = args.model_name or (model_cfg['name'] if model_cfg else DEFAULT_MODEL)
    print(save_random_weights(args.path, name, model_cfg, args.seed))
    return 0


from . import watch_cli  # noqa: E402,F401 - registers `watch` (a live stream), which uses the options above
