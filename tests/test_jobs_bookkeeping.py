"""The batch job's bookkeeping on messy folders, repeated runs and Milvus: nothing duplicated, mixed or silently kept.

One test per kind of failure: inputs named twice (symlink loops, links, list files as editors write them), paths
in Milvus filter expressions, runs with other settings on an existing output, refused runs that must change
nothing, a Milvus Lite database in use by another process; and the collection mirroring its one output file.
Models are the tiny same-architecture one with random weights; clips are generated.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY, TINY_CFG, VIDEOS_PY

from timesformer_video.jobs import errors, inputs, milvus_store, operators, results, runner
from timesformer_video.synthetic import make_video


def clip(path, seed):
    return make_video(path, n_frames=8, size=(80, 64), fps=8, seed=seed)


@pytest.fixture(scope='module')
def weights_b(tiny_weights, tmp_path_factory):
    """Other random weights of the same tiny model (same shapes, other values)."""
    import torch

    state = torch.load(tiny_weights, weights_only=True)
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp('weights_b') / 'tiny_b.pth'
    torch.save({k: torch.randn_like(v) * 0.1 for k, v in state.items()}, path)
    return path


def spec(weights, **kw):
    return operators.OperatorSpec(model_name=TINY, weights=str(weights), model_cfg=TINY_CFG, **kw)


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under `folder`: file -> its bytes, symlink -> 'link:' + target, folder -> 'dir'."""
    found = {}
    for parent, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(parent) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                found[rel] = 'link:' + os.readlink(path)
            elif path.is_dir():
                found[rel] = 'dir'
            else:
                found[rel] = path.read_bytes()
    return found


def read_rows(out):
    return results.read_output(out)


def milvus_paths(db, collection='videos'):
    with milvus_store.MilvusStore(str(db), collection) as store:
        return store.paths()


# -- 1. inputs: each real file one input; list files as editors write them ----------------------------------------
def test_symlink_loops_and_links_make_each_real_file_one_input(tiny_weights, tmp_path):
    clips = tmp_path / 'clips'
    for i, name in enumerate(('c0.mp4', 'c1.mp4', 'sub/c2.mp4')):
        clip(clips / name, i)
    os.symlink('.', clips / 'loop')  # the reported loop: clips/loop/loop/... -> clips
    os.symlink('.', clips / 'loop2')  # with two, glob's own `**` would walk 2^40 paths
    os.symlink('..', clips / 'sub' / 'up')  # a loop through the parent
    os.symlink('c0.mp4', clips / 'a_alias.mp4')  # sorts before its target
    os.link(clips / 'c1.mp4', clips / 'hard.mp4')  # the same file under a second name
    os.symlink(str(clips / 'sub'), tmp_path / 'sub_link')

    found = inputs.expand([clips, tmp_path / 'sub_link', clips / 'loop' / 'loop' / 'c1.mp4',
                           str(clips / 'loop' / '*.mp4'), str(clips / '**' / '*.mp4'), str(tmp_path / '**')])
    # Real names win over names through symlinks; each real file once; folders before what they hold.
    assert found == [str(clips / 'c0.mp4'), str(clips / 'c1.mp4'), str(clips / 'sub' / 'c2.mp4')]
    # Named only through a link: that name, once (glob itself would list loop2/sub, loop2/loop/sub, ...).
    assert inputs.expand([str(clips / 'loop2' / '**' / 'c2.mp4')]) == [str(clips / 'loop2' / 'sub' / 'c2.mp4')]

    out = tmp_path / 'r.parquet'
    summary = runner.run_index(runner.IndexJob([clips], out, spec(tiny_weights), progress=False))
    assert (summary.total, summary.processed, summary.failed) == (3, 3, 0)
    assert [row['path'] for row in read_rows(out)] == found


def test_without_inode_numbers_loops_still_end_and_names_are_not_merged(tmp_path, monkeypatch):
    """Some network and FUSE file systems report inode 0 for every file: that must not make all files one."""
    clips = tmp_path / 'clips'
    for name in ('c0.mp4', 'c1.mp4', 'sub/c2.mp4'):
        (clips / name).parent.mkdir(parents=True, exist_ok=True)
        (clips / name).write_bytes(b'')
    os.symlink('.', clips / 'loop')
    os.symlink('c0.mp4', clips / 'a_alias.mp4')
    real_stat = os.stat
    monkeypatch.setattr(os, 'stat', lambda path, *a, **kw: os.stat_result(
        (*tuple(real_stat(path, *a, **kw))[:1], 0, *tuple(real_stat(path, *a, **kw))[2:])))
    assert os.stat(clips / 'c0.mp4').st_ino == 0
    assert inputs.expand([clips, str(clips / '**' / '*.mp4')]) == [
        str(clips / name) for name in ('a_alias.mp4', 'c0.mp4', 'c1.mp4', 'sub/c2.mp4')]


def test_a_list_file_reads_the_way_editors_write_it(tmp_path):
    clips = tmp_path / 'clips'
    names = ['plain.mp4', 'with space.mp4', ' lead.mp4', 'trail.mp4 ', 'quoted.mp4', 'tab\tname.mp4', 'é ü.mp4']
    clips.mkdir()
    for name in names:
        (clips / name).write_bytes(b'')  # expand() only names files; it does not open them
    lines = ['# my videos', 'clips/plain.mp4  ', '\tclips/with space.mp4', 'clips/ lead.mp4', 'clips/trail.mp4 ',
             f'"{clips / "quoted.mp4"}"', 'clips/tab\tname.mp4', 'clips/é ü.mp4', '', '   ', 'clips/plain.mp4',
             'https://example.org/v.mp4', 'missing.mp4']
    expected = [str(clips / name) for name in names] + ['https://example.org/v.mp4', str(tmp_path / 'missing.mp4')]
    variants = {
        'unix.txt': ('\n'.join(lines) + '\n').encode(),
        'windows.txt': b'\xef\xbb\xbf' + '\r\n'.join(lines).encode(),  # Notepad: BOM, CRLF, no final newline
        'old_mac.lst': '\r'.join(lines).encode(),
        'utf16.list': '\r\n'.join(lines).encode('utf-16'),  # "Unicode" in Windows editors: UTF-16 with a BOM
    }
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
        assert inputs.expand([tmp_path / name]) == expected, name

    (tmp_path / 'bad.txt').write_bytes(b'\xff\xfe\x00\xd8')  # a UTF-16 BOM, then half a surrogate pair
    with pytest.raises(errors.ListFileError, match='save it as UTF-8'):
        inputs.expand([tmp_path / 'bad.txt'])


# -- 2. Milvus expressions built from paths ------------------------------------------------------------------------
NASTY = ['q"u\\o\nte.mp4', "it's.mp4", 'back\\slash\\n.mp4', 'a\\"b.mp4', 'cr\rlf.mp4', 'tab\t.mp4',
         '{p} [x] in (y).mp4', 'é\u2028ü\U0001F600.mp4', ''.join(chr(c) for c in range(1, 128) if chr(c) != '/')]


def test_every_character_survives_a_milvus_filter_expression(tmp_path):
    pytest.importorskip('milvus_lite')
    paths = [f'/v/{name}' for name in NASTY]
    settings = {'model_name': 'm'}
    with milvus_store.MilvusStore(str(tmp_path / 'v.db')) as store:
        rows = [{'path': p, 'error': None, 'labels': ['a'], 'scores': [0.5], 'duration': 1.0,
                 'feature': np.full(4, i + 1, np.float32)} for i, p in enumerate(paths)]
        assert store.sync(rows, settings, 4, '/out.parquet') == (len(paths), 0)
        assert store.paths() == set(paths)
        assert store.paths(batch=2) == set(paths)  # paged by the last key: an escaped literal too
        for path in paths:  # each literal selects exactly its own entity
            hit = store.client.query('videos', filter=milvus_store.in_filter('path', [path]), output_fields=['path'])
            assert [h['path'] for h in hit] == [path]
        store.delete([milvus_store.moment_id(path, 0) for path in paths[::2]])  # a whole video is the window at 0
        assert store.paths() == set(paths[1::2])


def test_a_path_with_quotes_backslashes_and_a_newline_is_removed_when_it_fails(tiny_weights, tmp_path):
    """The reported case: indexed, replaced with junk, re-run with --overwrite: the stale entity goes."""
    pytest.importorskip('milvus_lite')
    clips = tmp_path / 'clips'
    clip(clips / 'ok.mp4', 0)
    weird = clips / 'q"u\\o\nte.mp4'
    clip(clips / 'tmp.mp4', 1).rename(weird)
    db, out = tmp_path / 'videos.db', tmp_path / 'r.parquet'

    first = runner.run_index(runner.IndexJob([clips], out, spec(tiny_weights), milvus=str(db), progress=False))
    assert first.milvus == (2, 0)
    assert milvus_paths(db) == {str(clips / 'ok.mp4'), str(weird)}

    weird.write_bytes(b'junk' * 100)
    again = runner.run_index(runner.IndexJob([clips], out, spec(tiny_weights), milvus=str(db), overwrite=True,
                                             progress=False))
    assert (again.processed, again.failed, again.milvus) == (2, 1, (1, 1))
    rows = {row['path']: row for row in read_rows(out)}
    assert set(rows) == {str(clips / 'ok.mp4'), str(weird)} and rows[str(weird)]['error'] is not None
    assert milvus_paths(db) == {str(clips / 'ok.mp4')}

    third = runner.run_index(runner.IndexJob([clips], out, spec(tiny_weights), milvus=str(db),
                                             progress=False))  # later runs work
    assert (third.processed, third.milvus) == (0, (1, 0))  # nothing left to remove, and it says so


# -- 3. runs with other settings on an existing output -------------------------------------------------------------
def test_a_finished_output_is_not_extended_with_other_weights_or_topk(tiny_weights, weights_b, tmp_path):
    pytest.importorskip('milvus_lite')
    clips = tmp_path / 'clips'
    for i in range(2):
        clip(clips / f'c{i}.mp4', i)
    out, db = tmp_path / 'r.parquet', tmp_path / 'videos.db'
    runner.run_index(runner.IndexJob([clips], out, spec(tiny_weights, topk=5), milvus=str(db), progress=False))
    clip(clips / 'c2.mp4', 2)  # one more clip, then the run with other settings
    before = snapshot(tmp_path)

    for other, differs in ((spec(weights_b, topk=2), ('weights_sha256', 'topk')),
                           (spec(weights_b, topk=5), ('weights_sha256',)),
                           (spec(tiny_weights, topk=2), ('topk',)),
                           (spec(tiny_weights, topk=5, options={'num_crops': 3}), ('options',))):
        with pytest.raises(errors.SettingsMismatchError) as refused:
            runner.run_index(runner.IndexJob([clips], out, other, milvus=str(db), progress=False))
        message = str(refused.value)
        assert 'holds results made with other settings' in message
        assert [line.split(':')[0].strip() for line in message.splitlines()[1:-1]] == list(differs)
        assert '--overwrite' in message and '--out' in message  # the ways out
        assert snapshot(tmp_path) == before

    # The same weights under another path, and the operator's defaults spelled out: the same settings.
    copy = tmp_path / 'elsewhere' / 'copy.pth'
    copy.parent.mkdir()
    shutil.copy(tiny_weights, copy)
    resumed = runner.run_index(runner.IndexJob([clips], out,
                                               spec(copy, topk=5, options={'num_crops': 1, 'sampling': 'uniform'}),
                                               milvus=str(db), progress=False))
    assert (resumed.skipped, resumed.processed, resumed.milvus) == (2, 1, (3, 0))
    rows = read_rows(out)
    assert [row['path'] for row in rows] == [str(clips / f'c{i}.mp4') for i in range(3)]
    assert all(len(row['labels']) == 5 for row in rows)
    recorded = results.read_settings(out)
    assert recorded == spec(tiny_weights).signature()
    assert recorded['weights_sha256'] == operators.weights_sha256(copy) != operators.weights_sha256(weights_b)
    assert milvus_paths(db) == {row['path'] for row in rows}


def test_the_released_weights_and_the_same_file_named_with_weights_are_the_same_settings(tiny_weights, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    from timesformer_video.checkpoints import cache_path
    from timesformer_video.zoo import get_cfg

    operators.register_model_cfg(TINY_CFG)
    released = cache_path(get_cfg(TINY))
    released.parent.mkdir(parents=True)
    shutil.copy(tiny_weights, released)
    clips = tmp_path / 'clips'
    clip(clips / 'c0.mp4', 0)
    out = tmp_path / 'r.parquet'
    runner.run_index(runner.IndexJob([clips], out, operators.OperatorSpec(model_name=TINY, model_cfg=TINY_CFG),
                                     progress=False))
    clip(clips / 'c1.mp4', 1)
    again = runner.run_index(runner.IndexJob([clips], out, spec(released), progress=False))
    assert (again.skipped, again.processed) == (1, 1)
    assert results.read_settings(out)['weights_sha256'] == operators.weights_sha256(tiny_weights)


def test_an_output_without_recorded_settings_is_not_extended(tiny_weights, tmp_path):
    clips = tmp_path / 'clips'
    clip(clips / 'c0.mp4', 0)
    out = tmp_path / 'r.jsonl'
    runner.run_index(runner.IndexJob([clips], out, spec(tiny_weights), progress=False))
    assert json.loads(results.settings_path(out).read_text()) == spec(tiny_weights).signature()
    results.settings_path(out).unlink()  # e.g. the JSONL copied without its settings file
    before = snapshot(tmp_path)
    with pytest.raises(errors.SettingsMismatchError, match='does not record the settings'):
        runner.run_index(runner.IndexJob([clips], out, spec(tiny_weights), progress=False))
    assert snapshot(tmp_path) == before


# -- 4. a refused run changes nothing ------------------------------------------------------------------------------
def test_a_refused_run_leaves_the_output_folder_byte_for_byte_and_the_original_command_still_works(
        tiny_weights, weights_b, tmp_path):
    pytest.importorskip('milvus_lite')
    clips = tmp_path / 'clips'
    for i in range(3):
        clip(clips / f'c{i}.mp4', i)
    out, db = tmp_path / 'out' / 'r.parquet', tmp_path / 'out' / 'videos.db'
    parts = out.with_name('r.parquet.parts')

    # A finished output: another model's run is refused and leaves no job.json behind.
    runner.run_index(runner.IndexJob([clips / 'c0.mp4'], out, spec(tiny_weights), milvus=str(db), progress=False))
    before = snapshot(tmp_path)
    with pytest.raises(errors.SettingsMismatchError):
        runner.run_index(runner.IndexJob([clips], out, spec(weights_b), milvus=str(db), progress=False))
    assert snapshot(tmp_path) == before and not parts.exists()

    # An unfinished job (killed after one chunk, and during the next write): refused alike, its sidecar untouched.
    with results.ResultStore(out, 48, spec(tiny_weights).signature()) as store:
        store.write_chunk([{'path': str(clips / 'c1.mp4'), 'model': TINY, 'duration': 1.0, 'labels': ['a'],
                            'scores': [0.5], 'feature': np.ones(48, np.float32), 'decode_s': 0.1, 'model_s': 0.1,
                            'error': None}])
    (parts / '.tmp-0123abcd').write_bytes(b'PAR1 half a chunk')
    before = snapshot(tmp_path)
    with pytest.raises(errors.SettingsMismatchError, match='unfinished job with other settings'):
        runner.run_index(runner.IndexJob([clips], out, spec(weights_b), milvus=str(db), progress=False))
    assert snapshot(tmp_path) == before

    # Another output into this output's collection: refused by Milvus, before anything is written.
    other = tmp_path / 'out' / 'other.parquet'
    with pytest.raises(errors.MilvusCollectionError, match='mirrors another output file'):
        runner.run_index(runner.IndexJob([clips], other, spec(tiny_weights), milvus=str(db), progress=False))
    assert snapshot(tmp_path) == before

    # A Milvus Lite file that does not exist yet is not created by a refused run.
    with pytest.raises(errors.SettingsMismatchError):
        runner.run_index(runner.IndexJob([clips], out, spec(weights_b), milvus=str(tmp_path / 'out' / 'new.db'),
                                         progress=False))
    assert snapshot(tmp_path) == before

    # The original command finishes the job.
    done = runner.run_index(runner.IndexJob([clips], out, spec(tiny_weights), milvus=str(db), progress=False))
    assert (done.skipped, done.processed, done.milvus) == (2, 1, (3, 0))
    assert [row['path'] for row in read_rows(out)] == [str(clips / f'c{i}.mp4') for i in range(3)]
    assert milvus_paths(db) == {str(clips / f'c{i}.mp4') for i in range(3)} and not parts.exists()


# -- 5. a Milvus Lite database in use by another process -----------------------------------------------------------
def test_a_milvus_lite_database_open_in_another_process_is_one_line_and_exit_2(tiny_weights, tmp_path):
    pytest.importorskip('milvus_lite')
    clips = tmp_path / 'clips'
    clip(clips / 'c0.mp4', 0)
    db = tmp_path / 'videos.db'
    holder = subprocess.Popen([sys.executable, '-c', textwrap.dedent(f'''
        import sys, time
        from pymilvus import MilvusClient
        client = MilvusClient({str(db)!r})
        print('open', flush=True)
        sys.stdin.read()
        ''')], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'open'
        with pytest.raises(errors.MilvusInUseError, match='in use by another process'):
            milvus_store.MilvusStore(str(db))
        cfg = tmp_path / 'tiny.json'
        cfg.write_text(json.dumps(TINY_CFG))
        before = snapshot(tmp_path)
        result = subprocess.run([sys.executable, str(VIDEOS_PY), 'index', str(clips), '--out', 'r.parquet',
                                 '--milvus', str(db), '--model-cfg', str(cfg), '--weights', str(tiny_weights),
                                 '--no-progress'], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'error: Milvus Lite database {db} is in use by another process (Milvus Lite opens a .db in one process '
        f'at a time); wait for that process to finish or stop it, then run again']
    assert snapshot(tmp_path) == before  # nothing indexed, no output, no sidecar


# -- Also: the collection mirrors one output file ------------------------------------------------------------------
def test_overwrite_with_fewer_videos_removes_the_dropped_ones_from_milvus(tiny_weights, weights_b, tmp_path):
    pytest.importorskip('milvus_lite')
    clips = tmp_path / 'clips'
    for i in range(3):
        clip(clips / f'c{i}.mp4', i)
    out, db = tmp_path / 'r.parquet', tmp_path / 'videos.db'
    runner.run_index(runner.IndexJob([clips], out, spec(tiny_weights), milvus=str(db), progress=False))
    assert len(milvus_paths(db)) == 3

    fewer = [clips / 'c0.mp4', clips / 'c2.mp4']
    summary = runner.run_index(runner.IndexJob(fewer, out, spec(tiny_weights), milvus=str(db), overwrite=True,
                                               progress=False))
    assert summary.milvus == (2, 1)
    assert [row['path'] for row in read_rows(out)] == [str(p) for p in fewer]
    assert milvus_paths(db) == {str(p) for p in fewer}

    # --overwrite with other weights replaces the collection too: never two models' vectors in one.
    replaced = runner.run_index(runner.IndexJob(fewer[:1], out, spec(weights_b), milvus=str(db), overwrite=True,
                                                progress=False))
    assert replaced.milvus == (1, 0)  # a new collection: nothing was in it to remove
    assert milvus_paths(db) == {str(fewer[0])}
    assert [row['path'] for row in read_rows(out)] == [str(fewer[0])]
    with milvus_store.MilvusStore(str(db)) as store:
        row = read_rows(out)[0]
        hit = store.search(row['feature'], 1, TINY, spec(weights_b, topk=1).signature())[0]
        assert hit['path'] == row['path'] and hit['distance'] == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(errors.MilvusCollectionError, match='weights_sha256'):  # a query of the old weights
            store.search(row['feature'], 1, TINY, spec(tiny_weights).signature())


# -- Also: the DuckDB query of docs/batch_jobs.md ------------------------------------------------------------------
def test_the_documented_duckdb_similarity_query_runs(tiny_weights, tmp_path):
    import duckdb
    clips = tmp_path / 'clips'
    for i in range(3):
        clip(clips / f'c{i}.mp4', i)
    (clips / 'broken.mp4').write_bytes(b'junk' * 100)
    out = tmp_path / 'results.parquet'
    runner.run_index(runner.IndexJob([clips], out, spec(tiny_weights), progress=False))

    doc = (ROOT / 'docs' / 'batch_jobs.md').read_text()
    query = doc.split('```sql\n', 1)[1].split('```', 1)[0]
    query = query.replace('results.parquet', str(out)).replace('/videos/query.mp4', str(clips / 'c1.mp4'))
    query = query.replace('FLOAT[768]', 'FLOAT[48]')  # the tiny model's D
    found = duckdb.sql(query).fetchall()

    rows = {row['path']: row for row in read_rows(out) if row['error'] is None}
    q = rows[str(clips / 'c1.mp4')]['feature']
    cosine = {p: float(r['feature'] @ q / np.linalg.norm(r['feature']) / np.linalg.norm(q)) for p, r in rows.items()}
    assert [p for p, _ in found] == sorted(cosine, key=cosine.get, reverse=True)
    for path, similarity in found:
        assert similarity == pytest.approx(cosine[path], abs=1e-5)


def test_a_milvus_lite_database_in_a_new_folder_is_created_at_the_end_only(tiny_weights, tmp_path):
    pytest.importorskip('milvus_lite')
    clips = tmp_path / 'clips'
    clip(clips / 'c0.mp4', 0)
    db = tmp_path / 'new' / 'folder' / 'videos.db'
    summary = runner.run_index(runner.IndexJob([clips], tmp_path / 'r.parquet', spec(tiny_weights), milvus=str(db),
                                               progress=False))
    assert summary.milvus == (1, 0) and milvus_paths(db) == {str(clips / 'c0.mp4')}


def test_one_path_is_one_input_and_settings_out_of_range_are_refused(tmp_path):
    assert runner.IndexJob('a.mp4', 'r.parquet').inputs == ('a.mp4',)  # not 'a', '.', 'm', ...
    assert runner.IndexJob(tmp_path, 'r.parquet').inputs == (str(tmp_path),)
    for fields, match in [(dict(workers=0), 'workers must be an integer of at least 1'),
                          (dict(chunk_seconds=float('nan')), 'chunk_seconds must be a positive number'),
                          (dict(fmt='csv'), "fmt must be 'parquet', 'jsonl' or None"),
                          (dict(engine='gpu'), 'unknown engine')]:
        with pytest.raises(ValueError, match=match):
            runner.IndexJob(['a.mp4'], 'r.parquet', **fields)
    with pytest.raises(TypeError, match='spec must be an OperatorSpec'):
        runner.IndexJob(['a.mp4'], 'r.parquet', spec='timesformer_k400_8x224')


def test_an_output_that_is_one_of_the_inputs_is_refused_and_the_video_kept(tiny_weights, tmp_path):
    clips = tmp_path / 'clips'
    clip(clips / 'c0.mp4', 0)
    video = clips / 'c0.mp4'
    data = video.read_bytes()
    with pytest.raises(ValueError, match='is one of the input videos'):
        runner.run_index(runner.IndexJob([clips], video, spec(tiny_weights), overwrite=True, progress=False))
    assert video.read_bytes() == data


def test_an_output_name_of_another_format_and_a_spec_with_misplaced_fields_are_refused():
    with pytest.raises(ValueError, match=r'Parquet \(.parquet\) or JSON lines \(.jsonl\), not .csv'):
        results.format_for('results.csv')
    assert results.format_for('results.csv', 'jsonl') == 'jsonl'  # the format given: any name
    with pytest.raises(ValueError, match=r"options \['topk'\] are OperatorSpec fields"):
        operators.OperatorSpec(options={'topk': 3})
    with pytest.raises(TypeError, match='model_cfg must be a dict'):
        operators.OperatorSpec(model_cfg='tiny.json')
    with pytest.raises(ValueError, match='weights is an empty path'):
        operators.OperatorSpec(weights='')
