"""A static web server for an ``lvunet-serve --static`` folder in tests and benchmarks: Python's own
``http.server`` on 127.0.0.1, recording every request (path and status) so a test can fail on any
request that is not for a file in the folder. ``isolated`` adds the two headers that make the page
cross-origin isolated (what WASM threads need: COOP same-origin, COEP require-corp)."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class StaticServer:
    def __init__(self, folder: Path, isolated: bool = True) -> None:
        self.folder, self.requests = Path(folder), []
        log = self.requests

        class Handler(SimpleHTTPRequestHandler):
            extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                              ".wasm": "application/wasm", ".js": "text/javascript"}  # fmt: skip

            def end_headers(self) -> None:
                if isolated:
                    self.send_header("Cross-Origin-Opener-Policy", "same-origin")
                    self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
                self.send_header("Cache-Control", "no-store")
                super().end_headers()

            def log_request(self, code="-", size="-") -> None:
                log.append((self.command, self.path, int(code) if str(code).isdigit() else 0))

            def log_message(self, *args) -> None:  # quiet
                pass

        handler = functools.partial(Handler, directory=str(self.folder))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def outside(self) -> list[tuple]:
        """Requests that were not answered from a file of the folder (a 404, a path elsewhere)."""
        bad = []
        for method, path, status in self.requests:
            local = path.split("?")[0].lstrip("/") or "index.html"
            if method != "GET" or status != 200 or not (self.folder / local).is_file():
                bad.append((method, path, status))
        return bad

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
