"""`timesformer-videos watch SOURCE --window S`: classify a live source's windows as they complete (`watch.py`).

Exit status: 0 when the watch ends (the `--duration` passed, the source ended for good, Ctrl-C or SIGTERM: the rows
in hand are written, --out and Milvus flushed, one summary line on stderr); 2 a bad argument; 1 the source cannot be
opened at all, or the model or Milvus cannot be used (one `error:` line).
"""

from __future__ import annotations

import os
import signal
import sys

import click

from .cli import (
    SECONDS,
    Count,
    _args,
    _check_model,
    _check_model_files,
    _check_windows,
    _milvus_options,
    _model_options,
    _not_writable,
    _run,
    _spec,
    cli,
)
from .handoff import WAITING
from .stream_source import RECONNECT_TIMEOUT_S, RTSP_TRANSPORTS, TIMEOUT_S


@cli.command('watch', short_help='classify a live stream (RTSP, UDP/TCP, HLS, a growing file, a camera) as it plays')
@click.argument('source')
@click.option('--window', type=SECONDS, required=True, metavar='SECONDS',
              help='window length in seconds (whole ms): one row per window, as index --window makes them')
@click.option('--stride', type=SECONDS, default=None, metavar='SECONDS',
              help="seconds from one window's start to the next (default: the window, no overlap)")
@click.option('--json', is_flag=True, help='print one JSON line per window (and per gap) as it completes')
@click.option('--out', default=None, type=click.Path(dir_okay=False), metavar='ROWS.parquet|ROWS.jsonl',
              help='also write the rows (with their features): .jsonl appends and flushes each row; .parquet is '
                   'put in place when the watch ends')
@click.option('--duration', type=SECONDS, default=None, metavar='SECONDS',
              help='stop after watching this many seconds, counted once the model is ready (default: until the '
                   'source ends or Ctrl-C)')
@click.option('--reconnect-timeout', type=SECONDS, default=RECONNECT_TIMEOUT_S, show_default=True,
              metavar='SECONDS', help='a lost source is reopened with back-off until this long passes without a '
                                      'frame; then the watch ends')
@click.option('--timeout', type=SECONDS, default=TIMEOUT_S, show_default=True, metavar='SECONDS',
              help='seconds without data before opening or reading the source gives up (then it is reopened)')
@click.option('--rtsp-transport', type=click.Choice(RTSP_TRANSPORTS), default=None,
              help='rtsp:// sources: tcp (default) or udp')
@click.option('--waiting', type=Count(), default=WAITING, show_default=True,
              help='complete windows that may wait for the model; when the model is slower than the stream, the '
                   'oldest waiting window is skipped')
@_milvus_options(required=False)
@_model_options
def watch_command(**params) -> int:
    """Classify the windows of a live SOURCE as they complete: rtsp://, udp:// or tcp:// (MPEG-TS), http(s)://
    (an HLS .m3u8 playlist or a progressive stream), a file still being written, or a V4L2 camera (/dev/video0).
    Windows and their frames are those `index --window --stride` makes of the same video, on the stream's clock
    (the first frame at 0). See docs/streams.md."""
    args = _args('watch', {**params, 'clip_batch': 1})
    _check_model_files(args)
    _check_model(args)
    _check_windows(args)
    if args.out is not None:
        _check_out(args.out)
    return _run(_watch, args)


# One stream's windows go through the model as they complete: there are no videos to batch (`index --clip-batch`).
watch_command.params = [param for param in watch_command.params if param.name != 'clip_batch']


def _check_out(out: str) -> None:
    from .results import format_for

    problem = _not_writable(out)
    if problem is not None:
        raise click.BadParameter(f'{out} {problem}', param_hint="'--out'")
    try:
        format_for(out)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--out'") from None


def _watch(args) -> int:
    from .operators import build_classifier
    from .results import format_for
    from .stream_sinks import RowFile, json_line
    from .watch import Watch

    spec = _spec(args)
    op = build_classifier(spec)
    dim = op.cfg.embed_dim
    watch = Watch(args.source, op, args.window, args.stride, timeout=args.timeout,
                  reconnect_timeout=args.reconnect_timeout, rtsp_transport=args.rtsp_transport,
                  duration=args.duration, waiting=args.waiting)
    out = None if args.out is None else RowFile(args.out, format_for(args.out), spec.model_name, dim)
    milvus = None if args.milvus is None else _milvus_rows(args, spec, op, dim)
    previous = {sig: signal.signal(sig, lambda *_: watch.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for row in watch:
            if args.json:
                print(json_line(row), flush=True)
            if out is not None:
                out.write(row)
            if milvus is not None:
                milvus.write(row)
    except BaseException:
        if out is not None:
            out.close(empty=False)  # keep the rows written; make no file when there are none
        raise
    finally:
        watch.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if milvus is not None:
            milvus.store.close()
    if out is not None:
        out.close()
    print(watch.summary(), file=sys.stderr, flush=True)
    watch.close()  # the decoding thread leaves FFmpeg (at most --timeout s) after the rows are safe
    return 0


def _milvus_rows(args, spec, op, dim):
    """The moments collection, prepared for this source's windows before anything is watched."""
    from .checks import is_url
    from .milvus_store import MilvusStore
    from .paths import stored
    from .stream_sinks import MilvusRows

    # A watch keeps its Milvus connection open for hours: gRPC's C core would log a line to stderr each time the
    # server refuses a keepalive ping it finds too frequent (Milvus Lite does), a notice, not a failure.
    os.environ.setdefault('GRPC_VERBOSITY', 'NONE')
    source = stored(args.source if is_url(args.source) else os.path.abspath(args.source))
    output = source if args.out is None else stored(os.path.abspath(args.out))
    store = MilvusStore(args.milvus, args.collection, args.milvus_token)
    try:
        store.prepare(spec.signature(), dim, output, labels=op.labels, paths=[source])
    except BaseException:
        store.close()
        raise
    return MilvusRows(store, source)
