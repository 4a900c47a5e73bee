"""A free TCP port on 127.0.0.1, for a test's own server (HTTP, MJPEG, RTSP, sshd)."""
import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrefixProxy:
    """A reverse proxy on 127.0.0.1, as a plant's nginx puts several stations behind one address: ``/NAME/...`` goes
    to ``routes[NAME]`` (a base URL) with the prefix taken off, ``/NAME`` is redirected to ``/NAME/`` (as nginx
    does), anything else is 404."""

    def __init__(self, routes: dict[str, str]):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Forward(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                self._forward(None)

            def do_POST(self):  # noqa: N802
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _forward(self, body):
                import urllib.error
                import urllib.request

                name, _, rest = self.path.lstrip("/").partition("/")
                if name not in routes:
                    return self._answer(404, {}, b"not found")
                if not _ and not rest:
                    return self._answer(301, {"Location": f"/{name}/"}, b"")
                upstream = urllib.request.Request(routes[name] + "/" + rest, data=body, method=self.command, headers={
                    key: value for key, value in self.headers.items() if key.lower() in ("x-api-key", "content-type")})
                try:
                    with urllib.request.urlopen(upstream, timeout=30) as answer:
                        self._answer(answer.status, answer.headers, answer.read())
                except urllib.error.HTTPError as refused:
                    self._answer(refused.code, refused.headers, refused.read())

            def _answer(self, status, headers, body):
                self.send_response(status)
                for key in ("Content-Type", "Location", "Retry-After", "WWW-Authenticate"):
                    if headers.get(key):
                        self.send_header(key, headers[key])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
