"""The explorer's HTTP server: the standard library's threaded server, one handler that routes
each request to the explorer and answers every error as JSON with a 4xx status (5xx only for a
bug), and ``serve`` (run until Ctrl-C or SIGTERM)."""
from __future__ import annotations

import importlib.resources
import json
import logging
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from ..errors import LatentAtlasError
from .explorer import Explorer
from .wire import CSP, MAX_JOBS, MAX_SAMPLES, MAX_UPLOAD, HTTPError, int_param

log = logging.getLogger("latentatlas.serve")


def page_bytes() -> bytes:
    return importlib.resources.files("latentatlas.serve").joinpath("index.html").read_bytes()


def make_handler(ex: Explorer):
    page = page_bytes()

    class Handler(BaseHTTPRequestHandler):
        server_version = "latentatlas"
        sys_version = ""

        def log_message(self, fmt, *args):        # through logging, not stderr
            log.debug("%s - %s", self.address_string(), fmt % args)

        def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, obj, status: int = 200):
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _body(self) -> bytes:
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise HTTPError(400, "bad Content-Length") from None
            if n > MAX_UPLOAD:
                self.close_connection = True
                if n <= 4 * MAX_UPLOAD:        # read and drop it, so the client sees the answer
                    left = n
                    while left > 0:
                        chunk = self.rfile.read(min(left, 2 ** 20))
                        if not chunk:
                            break
                        left -= len(chunk)
                raise HTTPError(413, f"request body of {n} bytes exceeds the {MAX_UPLOAD // 2 ** 20} MiB limit")
            if n < 0:
                raise HTTPError(400, "bad Content-Length")
            return self.rfile.read(n)

        def _json_body(self) -> dict:
            try:
                obj = json.loads(self._body() or b"{}")
            except ValueError:
                raise HTTPError(400, "body is not valid JSON") from None
            except RecursionError:
                raise HTTPError(400, "body is nested too deeply") from None
            if not isinstance(obj, dict):
                raise HTTPError(400, "body must be a JSON object")
            return obj

        def _dispatch(self, method: str):
            u = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(u.query).items()}
            p = u.path
            try:
                if method == "GET" and p in ("/", "/index.html"):
                    return self._send(200, page, "text/html; charset=utf-8")
                if method == "GET" and p == "/api/info":
                    return self._json(ex.info())
                if method == "GET" and p == "/api/sample":
                    png = ex.sample(int_param(q.get("seed", 0), "seed", 0, 2 ** 31 - 1),
                                    int_param(q.get("n", 16), "n", 1, MAX_SAMPLES))
                    return self._send(200, png, "image/png")
                if method == "POST" and p == "/api/class":
                    return self._json(ex.set_class(self._json_body().get("class")))
                if method == "POST" and p == "/api/render":
                    return self._send(200, ex.render(self._json_body()), "image/png")
                if method == "POST" and p == "/api/strategies":
                    return self._json(ex.strategies(self._json_body()))
                if method == "GET" and p == "/api/set":
                    return self._json(ex.set_info(q.get("name", "")))
                if method == "GET" and p == "/api/walk":
                    return self._json(ex.walk(q))
                if method == "POST" and p == "/api/invert":
                    return self._json(ex.submit(self._body(), q).public(), 202)
                if method == "POST" and p == "/api/latent":
                    return self._json(ex.upload_latent(self._body()).public())
                if method == "GET" and p.startswith("/api/job/"):
                    rest = p[len("/api/job/"):]
                    if rest.endswith("/latent.npz"):
                        return self._send(200, ex.latent_npz(rest[:-len("/latent.npz")]), "application/octet-stream",
                                          {"Content-Disposition": "attachment; filename=latent.npz"})
                    job = ex.jobs.get(rest)
                    if job is None:
                        raise HTTPError(404, "no such job")
                    return self._json(job.public())
                if method == "GET" and p.startswith("/report/"):
                    f = ex.report_files.get(p[len("/report/"):])      # a listed name, never a path
                    if f is None:
                        raise HTTPError(404, "not a file of the report")
                    ctype = {".html": "text/html; charset=utf-8", ".png": "image/png", ".gif": "image/gif",
                             ".json": "application/json"}[f.suffix.lower()]
                    return self._send(200, f.read_bytes(), ctype)
                raise HTTPError(404, f"no such page: {p}")
            except HTTPError as e:
                return self._json({"error": e.message}, e.status)
            except LatentAtlasError as e:
                return self._json({"error": str(e)}, 400)
            except DISCONNECTS as e:       # the client went away mid-answer: nothing left to answer
                log.info("client %s went away during %s %s (%s)", self.client_address[0], method, p,
                         type(e).__name__)
                self.close_connection = True
                return None
            except Exception as e:  # noqa: BLE001 - one bad request never takes the server down
                log.exception("request %s %s failed", method, p)
                return self._json({"error": f"internal error ({type(e).__name__})"}, 500)

        def do_GET(self):
            self._dispatch("GET")

        def do_HEAD(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

    return Handler


DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)   # a client gone


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        """A client that went away mid-answer is one log line, not a traceback; anything else is logged
        with its traceback (a bug)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, DISCONNECTS):
            log.info("client %s went away (%s)", client_address[0], type(exc).__name__)
            return
        log.exception("request from %s failed", client_address[0])


def start(ex: Explorer, host: str = "127.0.0.1", port: int = 8000) -> Server:
    """Bind the server (port 0: any free port); call ``serve_forever`` on the result."""
    try:
        return Server((host, port), make_handler(ex))
    except OSError as e:
        raise LatentAtlasError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def serve(model, *, host: str = "127.0.0.1", port: int = 8000, atlas=None, directions=None, report_dir=None,
          max_jobs: int = MAX_JOBS, on_ready=None):
    """Run until Ctrl-C (or SIGTERM); everything temporary is removed on the way out."""
    ex = Explorer(model, atlas=atlas, directions=directions, report_dir=report_dir, max_jobs=max_jobs)
    srv = start(ex, host, port)
    def _term(signum, frame):
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, _term)
    try:
        if on_ready:
            on_ready(f"http://{srv.server_address[0]}:{srv.server_address[1]}/")
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        signal.signal(signal.SIGTERM, old)
        srv.server_close()
        ex.close()
