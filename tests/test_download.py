"""weights=None: the release file comes from torch's hub cache, else a download that is all or nothing.

A loopback HTTP server stands in for the release URL (TIMESFORMER_WEIGHTS_BASE_URL)."""

import dataclasses
import hashlib
import socket
from pathlib import Path

import pytest
import torch
from conftest import TINY
from release_server import RELEASE, ReleaseServer

from timesformer_video.classifier import ActionClassifier
from timesformer_video.errors import WeightsUnavailableError
from timesformer_video.zoo import get_cfg, register_model


@pytest.fixture
def server(tiny_weights, monkeypatch, tmp_path):
    srv = ReleaseServer(tiny_weights.read_bytes())
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('TIMESFORMER_WEIGHTS_BASE_URL', srv.url)
    yield srv
    srv.close()


def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


def test_download_lands_in_the_torch_hub_cache_and_is_reused(server, tmp_path, tiny_weights):
    op = ActionClassifier(model_name=TINY)
    assert [p.name for p in cache_dir(tmp_path).iterdir()] == [RELEASE]
    assert (cache_dir(tmp_path) / RELEASE).read_bytes() == tiny_weights.read_bytes()
    assert server.requests == 1
    server.close()  # offline from now on: the cached file must be enough
    again = ActionClassifier(model_name=TINY)
    assert torch.equal(op.model.head.weight, again.model.head.weight)


@pytest.mark.parametrize('mode', ['short', 'lying'])
def test_truncated_download_leaves_no_cached_file(server, tmp_path, mode):
    server.mode = mode
    with pytest.raises(WeightsUnavailableError):
        ActionClassifier(model_name=TINY)
    assert list(cache_dir(tmp_path).iterdir()) == []


@pytest.mark.parametrize('where', ['before the headers', 'mid-body'])
def test_a_stalled_download_gives_up_after_the_read_timeout(server, tmp_path, monkeypatch, where):
    """A server that accepts the connection and then sends nothing: the download raises after the read timeout
    (1 s here, `TIMESFORMER_DOWNLOAD_TIMEOUT`) instead of hanging, and caches nothing."""
    import time

    from timesformer_video.errors import DownloadStalledError

    monkeypatch.setenv('TIMESFORMER_DOWNLOAD_TIMEOUT', '1')
    if where == 'mid-body':
        server.mode = 'stall'
    else:  # a listening socket that never accepts or answers
        silent = socket.socket()
        silent.bind(('127.0.0.1', 0))
        silent.listen()
        monkeypatch.setenv('TIMESFORMER_WEIGHTS_BASE_URL', f'http://127.0.0.1:{silent.getsockname()[1]}')
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match='read timeout') as info:
        ActionClassifier(model_name=TINY)
    assert isinstance(info.value.__cause__, DownloadStalledError)
    assert 'TIMESFORMER_DOWNLOAD_TIMEOUT' in str(info.value)
    assert time.monotonic() - started < 60  # 1 s plus start-up; "hangs" would be forever
    assert list(cache_dir(tmp_path).iterdir()) == []
    if where != 'mid-body':
        silent.close()


def test_the_read_timeout_must_be_a_positive_number(monkeypatch):
    from timesformer_video.checkpoints import read_timeout_s

    monkeypatch.delenv('TIMESFORMER_DOWNLOAD_TIMEOUT', raising=False)
    assert read_timeout_s() == 60
    monkeypatch.setenv('TIMESFORMER_DOWNLOAD_TIMEOUT', '2.5')
    assert read_timeout_s() == 2.5
    for bad in ('0', '-1', 'nan', 'soon'):
        monkeypatch.setenv('TIMESFORMER_DOWNLOAD_TIMEOUT', bad)
        with pytest.raises(ValueError, match='TIMESFORMER_DOWNLOAD_TIMEOUT'):
            read_timeout_s()


def test_wrong_hash_leaves_no_cached_file(server, tmp_path, tiny_weights):
    cfg = get_cfg(TINY)
    register_model(dataclasses.replace(cfg, name='tiny_hashed', sha256='0' * 64))
    with pytest.raises(WeightsUnavailableError, match='hash'):
        ActionClassifier(model_name='tiny_hashed')
    assert list(cache_dir(tmp_path).iterdir()) == []
    right = hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    register_model(dataclasses.replace(cfg, name='tiny_hashed_ok', sha256=right))
    ActionClassifier(model_name='tiny_hashed_ok')
    assert [p.name for p in cache_dir(tmp_path).iterdir()] == [RELEASE]


def test_offline_error_names_the_url_the_cache_path_and_the_weights_option(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('TIMESFORMER_WEIGHTS_BASE_URL', f'http://127.0.0.1:{port}/mirror/')
    with pytest.raises(WeightsUnavailableError) as info:
        ActionClassifier(model_name=TINY)
    message = str(info.value)
    assert f'http://127.0.0.1:{port}/mirror/{RELEASE}' in message
    assert str(cache_dir(tmp_path) / RELEASE) in message
    assert 'weights=' in message


def test_default_url_is_the_release_url(monkeypatch):
    from timesformer_video.checkpoints import weights_url

    monkeypatch.delenv('TIMESFORMER_WEIGHTS_BASE_URL', raising=False)
    assert weights_url(get_cfg('timesformer_k400_8x224')) == \
        'https://www.dropbox.com/s/g5t24we9gl5yk88/TimeSformer_divST_8x32_224_K400.pyth?dl=1'
