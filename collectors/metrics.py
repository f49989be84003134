"""Prometheus-text ``/metrics`` and JSON ``/status`` over HTTP, served from a thread.

A thread (not the collector's event loop) serves the endpoint so that scraping still answers while the loop is busy,
and a busy scraper never slows the receive loop. The collector supplies two callables that build the text and the
status dict from its counters.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

log = logging.getLogger(__name__)

#: One metric family: (name, type, help, [(labels dict, value), ...]).
Family = tuple[str, str, str, list[tuple[dict, float]]]


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_prometheus(families: Iterable[Family]) -> str:
    """Render metric families in the Prometheus text exposition format (version 0.0.4)."""
    out = []
    for name, mtype, help_text, samples in families:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {mtype}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            v = float(value)
            text = "NaN" if v != v else ("+Inf" if v == float("inf") else repr(v) if not v.is_integer() else str(int(v)))
            out.append(f"{name}{{{label_text}}} {text}" if label_text else f"{name} {text}")
    return "\n".join(out) + "\n"


class MetricsServer:
    """HTTP endpoint: ``/metrics`` (Prometheus text) and ``/status`` (JSON).

    Parameters
    ----------
    listen : str
        ``host:port``; port 0 picks a free port (see :attr:`port`).
    metrics : callable
        Returns the metrics text.
    status : callable
        Returns the status dict.
    """

    def __init__(self, listen: str, metrics: Callable[[], str], status: Callable[[], dict]) -> None:
        host, port = listen.rsplit(":", 1)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                try:
                    if self.path.split("?")[0] == "/metrics":
                        body = outer._metrics().encode()
                        ctype = "text/plain; version=0.0.4; charset=utf-8"
                    elif self.path.split("?")[0] == "/status":
                        body = json.dumps(outer._status(), default=str, ensure_ascii=False).encode()
                        ctype = "application/json"
                    else:
                        self.send_error(404, "try /metrics or /status")
                        return
                except Exception as exc:  # a bug in rendering must not kill the endpoint thread
                    log.exception("metrics rendering failed")
                    self.send_error(500, str(exc))
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not worth a log line each
                pass

        self._metrics, self._status = metrics, status
        self.httpd = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = host
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="wattline-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()
