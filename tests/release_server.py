"""A local HTTP server standing in for the release download (`TIMESFORMER_WEIGHTS_BASE_URL=server.url`).

It serves one payload at `/<RELEASE>` (404 elsewhere) and counts requests. `mode`, which a test may change between
requests: 'ok'; 'short' (an honest Content-Length for a cut-off body); 'lying' (the full Content-Length, half the
body, then the connection closes); 'stall' (the full Content-Length, half the body, then nothing while the connection
stays open, until `close()` or `wait_s`). `sent_half` is set whenever half a body has gone out in 'stall' mode.
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RELEASE = 'TimeSformer_divST_8x32_224_K400.pyth'  # the 8x224 record's file (the tiny test record is a copy of it)


class ReleaseServer:
    def __init__(self, payload: bytes, mode: str = 'ok', wait_s: float = 60):
        self.payload, self.mode, self.requests = payload, mode, 0
        self.sent_half, self.released = threading.Event(), threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                server.requests += 1
                if self.path != f'/{RELEASE}':
                    self.send_error(404)
                    return
                body = server.payload if server.mode == 'ok' else server.payload[:len(server.payload) // 2]
                promised = server.payload if server.mode in ('lying', 'stall') else body
                self.send_response(200)
                self.send_header('Content-Length', str(len(promised)))
                self.end_headers()
                self.wfile.write(body)
                if server.mode == 'stall':
                    self.wfile.flush()
                    server.sent_half.set()
                    server.released.wait(wait_s)  # hold the connection open, sending nothing
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
