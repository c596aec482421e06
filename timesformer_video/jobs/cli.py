"""Index a video collection (classify + embed, resumable, local or Ray) and search it in Milvus.

    timesformer-videos index VIDEOS... --out results.parquet [--milvus ./videos.db] [--engine ray]
    timesformer-videos search VIDEO --milvus ./videos.db -k 5
    timesformer-videos index VIDEOS... --out moments.parquet --window 4 [--stride 2] --milvus ./videos.db
    timesformer-videos search CLIP --milvus ./videos.db --moments -k 5 [--start S --end S] [--html hits.html]
    timesformer-videos explain VIDEO [--start S --end S] [--label NAME] --out maps.png

The package's command; `python scripts/videos.py ...` is the same.

Exit status: 0 done; 2 a bad argument (one line, before anything is loaded); 1 the job could not run (weights,
settings, output state); 3 `index` finished but its output records videos that failed (a summary is printed);
130 interrupted.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import re
import sys
import warnings

from ..errors import CheckpointError, WeightsUnavailableError
from .errors import JobError, UsageError
from .moments import MAX_LIMIT
from .operators import DEFAULT_MODEL, OperatorSpec, read_model_cfg

EXIT_JOB_ERROR = 1  # the job could not run (weights, settings, output state); each video's failure is not one
EXIT_USAGE = 2  # a bad argument, found before any heavy work (argparse's own status for usage errors)
EXIT_IN_USE = 2  # a file the job needs (the output, a Milvus Lite .db) is held by another process: errors.InUseError
EXIT_VIDEOS_FAILED = 3  # `index` completed, but the output records at least one video with an error
EXIT_INTERRUPTED = 130
FAILURES_SHOWN = 5  # failed paths listed in the summary; the rest are in the output's error column


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong and where to look), exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def _at_least(minimum, kind=int, maximum=float('inf')):
    """A number from `minimum` to `maximum` (a finite one)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
        accepted = '' if maximum == float('inf') else f' (accepted: {minimum}..{maximum})'
        if not value >= minimum:  # also refuses NaN
            raise argparse.ArgumentTypeError(f'must be at least {minimum}, got {text}{accepted}')
        if not value <= maximum or value == float('inf'):
            limit = 'finite' if maximum == float('inf') else f'at most {maximum}'
            raise argparse.ArgumentTypeError(f'must be {limit}, got {text}{accepted}')
        return value
    parse.__name__ = kind.__name__
    return parse


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
    if not 0 < value < float('inf'):  # also refuses NaN
        raise argparse.ArgumentTypeError(f'must be more than 0 (finite), got {text}')
    return value


def _model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('model')
    group.add_argument('--model-name', default=None,
                       help=f'a zoo model name (default {DEFAULT_MODEL}, or the name in --model-cfg)')
    group.add_argument('--weights', default=None,
                       help='checkpoint file or HF save_pretrained directory; default: the released file from '
                            "torch's hub cache (downloaded there if missing)")
    group.add_argument('--model-cfg', default=None, metavar='JSON',
                       help='register an extra model record first: {"name": ..., "base": <zoo name>, '
                            '<ModelCfg field>: value, ...} (fine-tuned or smaller models)')
    group.add_argument('--topk', type=_at_least(1), default=5, help='labels and scores kept per video (default 5)')
    group.add_argument('--device', default=None, help="'cpu', 'cuda', 'cuda:1'; default CUDA when present")
    group.add_argument('--trust-checkpoint', action='store_true',
                       help='allow torch.load(weights_only=False) for a checkpoint you trust (it runs its code)')
    group.add_argument('--num-crops', type=int, choices=(1, 3), default=None,
                       help="1: centre crop (default); 3: the paper's three spatial crops (3x the compute)")
    group.add_argument('--sampling', choices=('uniform', 'clip'), default=None,
                       help="uniform: frames spread over the whole video (default); clip: the paper's fixed-rate "
                            "clip from the middle")
    group.add_argument('--precision', choices=('fp32', 'bf16', 'fp16', 'int8'), default=None,
                       help='fp32 (default); bf16/fp16 on CUDA; int8 on the CPU (see the operator docs)')
    group.add_argument('--clip-batch', type=_at_least(1), default=1,
                       help='videos per model forward (op.batch; raise it on a GPU); 1 (default) makes every '
                            'row independent of how videos are grouped')


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


def program() -> str:
    """The name the user ran this command by: `videos.py` (the script) or `timesformer-videos` (the package's)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ''
    return name if name in ('videos.py', 'timesformer-videos') else 'timesformer-videos'


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=program(), description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True, parser_class=_Parser)

    index = commands.add_parser(
        'index', help='classify and embed videos into Parquet/JSONL (and Milvus); resumes where it stopped',
        description='Classify and embed every video; one row per video. Re-running the same command resumes: '
                    'done videos are skipped. In-progress state lives in OUT.parts/ beside OUT.')
    index.add_argument('inputs', nargs='+', metavar='VIDEOS',
                       help='video files, directories (searched recursively by video extension), globs '
                            "(quote them: 'clips/**/*.mp4'), URLs, or .txt/.lst files listing paths/URLs one a line")
    index.add_argument('--out', required=True, help='output file: results.parquet (default format) or .jsonl')
    index.add_argument('--format', choices=('parquet', 'jsonl'), default=None,
                       help='output format; default from the --out extension (.jsonl -> jsonl), else parquet')
    index.add_argument('--chunk-size', type=_at_least(1), default=32,
                       help='videos per atomically written chunk: at most this many are redone after a kill')
    index.add_argument('--chunk-seconds', type=_positive, default=60.0,
                       help='also write a chunk when this many seconds passed since the last one')
    index.add_argument('--retry-failed', action='store_true', help='process again the videos recorded with an error')
    index.add_argument('--overwrite', action='store_true',
                       help='discard the existing output and unfinished state instead of resuming (with --milvus, '
                            'the collection then mirrors the new output: videos no longer in it are removed)')
    index.add_argument('--no-progress', dest='progress', action='store_false', help='no progress bar')
    moments = index.add_argument_group('moments', 'index the windows of each video: one row (and Milvus entity) '
                                                   'per window, to search for the moment, not just the video')
    moments.add_argument('--window', type=float, default=None, metavar='SECONDS',
                         help='window length in seconds (whole ms); rows get start_ms and end_ms, and hold the '
                              'frames shown in [start_ms, end_ms) on exact times (see docs/moments.md)')
    moments.add_argument('--stride', type=float, default=None, metavar='SECONDS',
                         help='seconds from one window\'s start to the next (default: the window, no overlap)')
    ray = index.add_argument_group('engine')
    ray.add_argument('--engine', choices=('local', 'ray'), default='local',
                     help='local: this process; ray: a Ray Data actor pool of model replicas')
    ray.add_argument('--workers', type=_at_least(1), default=2, help='Ray: model replicas (default 2)')
    ray.add_argument('--ray-address', default=None,
                     help='Ray: join this cluster (e.g. ray://head:10001 or auto); default RAY_ADDRESS if set, '
                          'else start a local Ray')
    ray.add_argument('--cpus-per-worker', type=_positive, default=1, help='Ray: CPU cores per replica (default 1)')
    ray.add_argument('--gpus-per-worker', type=_at_least(0.0, float), default=None,
                     help='Ray: GPUs per replica; default 1 when the cluster has GPUs, else 0')
    ray.add_argument('--batch-size', type=_at_least(1), default=1, help='Ray: videos per map_batches call (default 1)')
    ray.add_argument('--verbose', action='store_true',
                     help="Ray: show Ray's own log lines (start-up notices, core-worker messages); default quiet")
    _milvus_args(index, required=False, mirror=True)
    _model_args(index)

    search = commands.add_parser('search', help='embed a video and list the most similar indexed videos',
                                 description='Embed VIDEO with the model used for indexing and list the k '
                                             'nearest indexed videos. distance is the cosine similarity '
                                             '(1 = same direction, higher is more similar).')
    search.add_argument('video')
    search.add_argument('-k', type=_at_least(1, maximum=MAX_LIMIT), default=5,
                        help=f'how many results (default 5, at most {MAX_LIMIT}, Milvus\'s largest search)')
    search.add_argument('--json', action='store_true', help='print JSON instead of a table')
    moments = search.add_argument_group('moments', 'search a moments collection (index --window) for the most '
                                                   'similar moments: video and time')
    moments.add_argument('--moments', action='store_true',
                         help='list moments (path, start-end, similarity); overlapping windows of one video that '
                              'are both hits are merged into one (default collection: moments)')
    moments.add_argument('--start', type=float, default=None, metavar='S',
                         help='embed only the frames of VIDEO shown from S seconds on (exact times, the rule of '
                              'the windows; default: its start)')
    moments.add_argument('--end', type=float, default=None, metavar='S',
                         help='embed only the frames of VIDEO shown before S seconds (default: its end)')
    moments.add_argument('--label', default=None, metavar='NAME',
                         help='only moments whose top label is NAME (a filter in Milvus)')
    moments.add_argument('--min-score', type=float, default=None, metavar='P',
                         help='only moments whose top label\'s score is at least P (0..1)')
    moments.add_argument('--html', default=None, metavar='OUT.html',
                         help='also write a page with a thumbnail strip of each hit\'s frames and its time range')
    moments.add_argument('--maps', action='store_true',
                         help='with --html: also draw over each hit\'s frames the attention map of its similarity '
                              'to the query (op.explain, gradient; about 3 forward passes per hit)')
    _milvus_args(search, required=True)
    _model_args(search)

    _explain_args(commands)

    weights = commands.add_parser(
        'random-weights', help='write randomly initialised weights (to try the pipeline offline; meaningless labels)',
        description='Write a plain state dict of a randomly initialised model of the exact shape, for trying the '
                    'pipeline or measuring speed where the released weights cannot be downloaded. Its labels and '
                    'embeddings mean nothing.')
    weights.add_argument('path')
    weights.add_argument('--model-name', default=None, help=f'default {DEFAULT_MODEL}, or the name in --model-cfg')
    weights.add_argument('--model-cfg', default=None, metavar='JSON', help='as for index')
    weights.add_argument('--seed', type=int, default=0)
    return parser


def _explain_args(commands) -> None:
    explain = commands.add_parser(
        'explain', help='draw where the model looked: a video\'s frames with their attention maps',
        description='Classify one clip of VIDEO (its centre crop) and save its frames with the space-time attention '
                    'map of a label drawn over them (op.explain; the formulas are in docs/explain.md).')
    explain.add_argument('video')
    explain.add_argument('--out', required=True, metavar='MAPS.png',
                         help='the picture: .png (a grid of the frames), .gif or .webp (an animation)')
    explain.add_argument('--start', type=_at_least(0.0, float), default=None, metavar='S',
                         help='only the part of VIDEO from S seconds (default: its start)')
    explain.add_argument('--end', type=_positive, default=None, metavar='S',
                         help='only the part of VIDEO before S seconds (default: its end)')
    explain.add_argument('--label', default=None, metavar='NAME', help='the label to explain (default: the top one)')
    explain.add_argument('--method', choices=('rollout', 'gradient'), default=None,
                         help='rollout (default: attention rollout, the same map for every label) or gradient '
                              '(attention weighted by the label\'s gradient)')
    _model_args(explain)


def _explain(args) -> int:
    from ..explain import IMAGE_FORMATS
    from .inputs import is_url
    from .operators import build_classifier, build_decoder

    if not is_url(args.video) and not os.path.isfile(os.path.expanduser(args.video)):
        raise UsageError(f'{args.video}: video not found')
    if os.path.splitext(args.out)[1].lower() not in IMAGE_FORMATS:
        raise UsageError(f'--out {args.out}: name the picture with one of {", ".join(IMAGE_FORMATS)}')
    if args.start is not None and args.end is not None and args.start >= args.end:
        raise UsageError(f'--start ({args.start}) must be before --end ({args.end})')
    op = build_classifier(_spec(args))
    explanation = op.explain(build_decoder(args.start, args.end)(args.video), target=args.label,
                             method=args.method)
    path = explanation.save(args.out)
    print(f'{path}: {explanation.title()}; frames {explanation.frame_indices}')
    return 0


def _milvus_args(parser: argparse.ArgumentParser, required: bool, mirror: bool = False) -> None:
    group = parser.add_argument_group('milvus')
    group.add_argument('--milvus', required=required, default=None, metavar='URI',
                       help='Milvus Lite file (./videos.db, embedded) or server URI (http://host:19530)'
                            + ('. The collection mirrors --out: after the run it holds exactly the processed rows '
                               'of that one file (others are removed), and indexing another --out or other '
                               'settings into it is refused' if mirror else ''))
    group.add_argument('--collection', default=None,
                       help='collection name (default videos; moments with --window or --moments)')
    group.add_argument('--milvus-token', default=None, help='server token (user:password); or MILVUS_TOKEN')


def _random_weights(args) -> int:
    from .operators import save_random_weights

    model_cfg = read_model_cfg(args.model_cfg) if args.model_cfg else None
    name = args.model_name or (model_cfg['name'] if model_cfg else DEFAULT_MODEL)
    print(save_random_weights(args.path, name, model_cfg, args.seed))
    return 0


def _positive_seconds(args, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and not 0 < value < float('inf'):  # also refuses nan
            raise UsageError(f'--{name} must be a positive, finite number of seconds, got {value}')


def _check_moments(args) -> None:
    """Out-of-range moment arguments: one line, exit status 2 (UsageError), before anything is loaded."""
    if args.command == 'index':
        _positive_seconds(args, 'window', 'stride')
        if args.stride is not None and args.window is None:
            raise UsageError('--stride needs --window: give the window length in seconds too')
    elif args.command == 'search':  # -k < 1 is refused by the parser
        for name in ('start', 'end'):
            value = getattr(args, name)
            if value is not None and not value >= 0:
                raise UsageError(f'--{name} must be a number of seconds >= 0, got {value}')
        if args.start is not None and args.end is not None and args.start >= args.end:
            raise UsageError(f'--start ({args.start}) must be before --end ({args.end})')
        if args.maps and args.html is None:
            raise UsageError('--maps draws on the page: add --html OUT.html')
        if args.min_score is not None and not 0 <= args.min_score <= 1:
            raise UsageError(f'--min-score is a probability in 0..1, got {args.min_score}')
        if not args.moments:
            used = [f'--{name.replace("_", "-")}' for name in ('label', 'min_score', 'html')
                    if getattr(args, name) is not None]
            if used:
                raise UsageError(f'{", ".join(used)} filter or show moments: add --moments (and index with '
                                 f'--window)')
    if getattr(args, 'collection', 'set') is None:
        moments = getattr(args, 'window', None) is not None or getattr(args, 'moments', False)
        args.collection = 'moments' if moments else 'videos'


def _index(args) -> int:
    from .runner import IndexJob, run_index

    summary = run_index(IndexJob(args.inputs, args.out, _spec(args), fmt=args.format, engine=args.engine,
                                 workers=args.workers, ray_address=args.ray_address,
                                 cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                                 batch_size=args.batch_size, chunk_size=args.chunk_size,
                                 chunk_seconds=args.chunk_seconds, milvus=args.milvus, collection=args.collection,
                                 milvus_token=args.milvus_token, retry_failed=args.retry_failed,
                                 overwrite=args.overwrite, progress=args.progress))
    from .paths import readable

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
        hits = store.search(row['feature'], args.k, spec.model_name, spec.signature())
    if args.json:
        print(json.dumps({'query': row['path'], 'label': row['labels'][0], 'results': hits}, indent=1))
        return 0
    print(f'query: {display(row["path"])}  (top label {row["labels"][0]} {row["scores"][0]:.3f})')
    print(f'{"rank":>4}  {"distance":>8}  {"top label":<30} {"score":>6}  path')
    for rank, hit in enumerate(hits, 1):
        print(f'{rank:>4}  {hit["distance"]:8.4f}  {hit["label"][:30]:<30} {hit["score"]:6.3f}  '
              f'{display(hit["path"])}')
    return 0


_COLLECTION_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]{0,254}')


def _not_writable(path: str, example: str) -> str | None:
    """Why no file can be written at `path` (missing folders are made); None when one can."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        return f'is a directory; give a file name such as {example}'
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


def _invalid_files(args) -> str | None:
    """What is wrong with the files `index` and `search` write (--out, --html), before anything runs."""
    if args.command == 'index':
        from .results import format_for

        problem = _not_writable(args.out, 'results.parquet')
        if problem is not None:
            return f'--out {args.out} {problem}'
        try:
            format_for(args.out, args.format)
        except ValueError as e:
            return str(e)
    if args.command == 'search' and args.html is not None:
        problem = _not_writable(args.html, 'hits.html')
        if problem is not None:
            return f'--html {args.html} {problem}'
    return None


def _invalid_model(args) -> str | None:
    """What is wrong with the model options of `index` and `search` (the model record, name, --topk, --device,
    --precision, --window): checked against the model's record, before its weights are loaded."""
    if args.command not in ('index', 'search'):
        return None
    from ..build import check_precision, resolve_device
    from ..zoo import get_cfg
    from .operators import register_model_cfg

    record = None
    if args.model_cfg is not None:
        try:
            record = read_model_cfg(args.model_cfg)
            register_model_cfg(record)
        except (ValueError, TypeError, OSError) as e:
            return f'--model-cfg {args.model_cfg}: {e}'
    name = args.model_name or (record['name'] if record else DEFAULT_MODEL)
    try:
        cfg = get_cfg(name)
    except ValueError as e:
        return f'--model-name: {e}'
    if args.topk > cfg.num_classes:
        return (f'argument --topk: must be at most {cfg.num_classes} (the labels of {name}), got {args.topk} '
                f'(accepted: 1..{cfg.num_classes})')
    try:
        device = resolve_device(args.device)
        if args.precision is not None:
            check_precision(args.precision, device)
    except ValueError as e:
        return f'--device/--precision: {e}'
    window, stride = getattr(args, 'window', None), getattr(args, 'stride', None)
    if all(value is None or 0 < value < float('inf') for value in (window, stride)) and window is not None:
        from ..windows import check_window  # the operator's own rule; other values: _check_moments

        try:
            check_window(window, stride)
        except ValueError as e:
            return f'--window/--stride: {e}'
    return None


def _invalid(args) -> str | None:
    """What is wrong with the arguments that argparse cannot see (files, URIs), checked before any model loads."""
    from .inputs import is_url

    if args.command == 'search' and not is_url(args.video) and not os.path.isfile(os.path.expanduser(args.video)):
        return f'{args.video}: query video not found'
    weights = getattr(args, 'weights', None)
    if weights is not None and not is_url(weights) and not os.path.exists(os.path.expanduser(weights)):
        return f'--weights {weights}: weights file not found (expected a checkpoint file or directory)'
    model_cfg = getattr(args, 'model_cfg', None)
    if model_cfg is not None and not os.path.isfile(os.path.expanduser(model_cfg)):
        return f'--model-cfg {model_cfg}: file not found (expected a JSON model record)'
    problem = _invalid_files(args) or _invalid_model(args)
    if problem is not None:
        return problem
    collection = getattr(args, 'collection', None)
    if collection is not None and not _COLLECTION_NAME.fullmatch(collection):
        return (f'--collection {collection!r}: a Milvus collection name is 1 to 255 letters, digits and '
                f'underscores, starting with a letter or an underscore')
    milvus = getattr(args, 'milvus', None)
    if milvus is not None:
        from .milvus_store import resolve_uri

        try:
            uri = resolve_uri(milvus)
        except ValueError as e:
            return str(e)
        if args.command == 'search' and '://' not in uri and not os.path.exists(uri):
            return (f'--milvus {milvus}: no Milvus Lite database there; index videos into it first '
                    f'({program()} index VIDEOS --out results.parquet --milvus {milvus})')
    return None


def _quiet_ray() -> None:
    """Keep Ray's own Python notices off the console (`--verbose` shows them): the token-authentication notice
    printed at start-up and Ray Data's progress-bar notice. Warnings and errors of other Ray loggers still show."""
    for name in ('ray._private.authentication.authentication_token_setup', 'ray.data._internal.progress'):
        logging.getLogger(name).setLevel(logging.ERROR)


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


def _search_moments(args, spec, row) -> int:
    from .milvus_store import MilvusStore
    from .moments import format_time, search_moments
    from .paths import display

    with MilvusStore(args.milvus, args.collection, args.milvus_token, moments=True) as store:
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


def main(argv=None) -> int:
    warnings.filterwarnings('ignore', message='.*pkg_resources.*')  # towhee imports it
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a usage error (printed in one line) or --help: a status for in-process callers too
        return e.code
    problem = _invalid(args)
    if problem is not None:
        print(f'{program()} {args.command}: error: {problem}', file=sys.stderr)
        return EXIT_USAGE
    if args.command == 'index' and args.engine == 'ray' and not args.verbose:
        _quiet_ray()
    try:
        _check_moments(args)
        return {'index': _index, 'search': _search, 'random-weights': _random_weights,
                'explain': _explain}[args.command](args)
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
