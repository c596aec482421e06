"""weights=None: the release file comes from torch's hub cache, else a download that is all or nothing.

A loopback HTTP server stands in for the release URL (TIMESFORMER_WEIGHTS_BASE_URL)."""

import dataclasses
import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import TINY

from timesformer_op import timesformer
from timesformer_op.checkpoints import WeightsUnavailableError
from timesformer_op.zoo import get_cfg, register_model

RELEASE = 'TimeSformer_divST_8x32_224_K400.pyth'


class Server:
    """Serves one payload at /<RELEASE>; `mode` 'ok', 'short' (honest but cut-off body), 'lying' (Content-Length
    larger than what is sent, then the connection closes)."""

    def __init__(self, payload: bytes):
        self.payload, self.mode, self.requests = payload, 'ok', 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                server.requests += 1
                if self.path != f'/{RELEASE}':
                    self.send_error(404)
                    return
                body = server.payload if server.mode == 'ok' else server.payload[:len(server.payload) // 2]
                self.send_response(200)
                self.send_header('Content-Length', str(len(server.payload if server.mode == 'lying' else body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tiny_weights, monkeypatch, tmp_path):
    srv = Server(tiny_weights.read_bytes())
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('TIMESFORMER_WEIGHTS_BASE_URL', srv.url)
    yield srv
    srv.close()


def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


def test_download_lands_in_the_torch_hub_cache_and_is_reused(server, tmp_path, tiny_weights):
    op = timesformer(model_name=TINY)
    assert [p.name for p in cache_dir(tmp_path).iterdir()] == [RELEASE]
    assert (cache_dir(tmp_path) / RELEASE).read_bytes() == tiny_weights.read_bytes()
    assert server.requests == 1
    server.close()  # offline from now on: the cached file must be enough
    again = timesformer(model_name=TINY)
    assert torch.equal(op.model.head.weight, again.model.head.weight)


@pytest.mark.parametrize('mode', ['short', 'lying'])
def test_truncated_download_leaves_no_cached_file(server, tmp_path, mode):
    server.mode = mode
    with pytest.raises(WeightsUnavailableError):
        timesformer(model_name=TINY)
    assert list(cache_dir(tmp_path).iterdir()) == []


def test_wrong_hash_leaves_no_cached_file(server, tmp_path, tiny_weights):
    cfg = get_cfg(TINY)
    register_model(dataclasses.replace(cfg, name='tiny_hashed', sha256='0' * 64))
    with pytest.raises(WeightsUnavailableError, match='hash'):
        timesformer(model_name='tiny_hashed')
    assert list(cache_dir(tmp_path).iterdir()) == []
    right = hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    register_model(dataclasses.replace(cfg, name='tiny_hashed_ok', sha256=right))
    timesformer(model_name='tiny_hashed_ok')
    assert [p.name for p in cache_dir(tmp_path).iterdir()] == [RELEASE]


def test_offline_error_names_the_url_the_cache_path_and_the_weights_option(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('TIMESFORMER_WEIGHTS_BASE_URL', f'http://127.0.0.1:{port}/mirror/')
    with pytest.raises(WeightsUnavailableError) as info:
        timesformer(model_name=TINY)
    message = str(info.value)
    assert f'http://127.0.0.1:{port}/mirror/{RELEASE}' in message
    assert str(cache_dir(tmp_path) / RELEASE) in message
    assert 'weights=' in message


def test_default_url_is_the_release_url(monkeypatch):
    from timesformer_op.checkpoints import weights_url

    monkeypatch.delenv('TIMESFORMER_WEIGHTS_BASE_URL', raising=False)
    assert weights_url(get_cfg('timesformer_k400_8x224')) == \
        'https://www.dropbox.com/s/g5t24we9gl5yk88/TimeSformer_divST_8x32_224_K400.pyth?dl=1'
