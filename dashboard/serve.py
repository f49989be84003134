"""Serve a dashboard app with werkzeug in a background thread that the caller can stop cleanly.

``wattline demo`` runs the simulator, the collector and the dashboard in one process; it starts the dashboard with
:func:`run_dashboard`, which serves in a background thread and returns the server; ``server.stop()`` (or setting the
``stop_event`` passed in) stops it cleanly.

Requests are handled by a fixed pool of threads rather than a new thread per request: the SQLite store keeps one
connection per thread, so a bounded pool keeps the number of open connections bounded over months of refreshes.
Connections are not kept alive between requests, so idle browser connections never hold a pool thread.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

from dashboard.errors import DashboardError, PortInUseError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


class _RequestHandler(WSGIRequestHandler):
    # HTTP/1.0: one request per connection, so a pool thread is free again as soon as its response is sent.
    protocol_version = "HTTP/1.0"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Every refresh is a request; access lines would drown the demo's own log.
        log.debug("%s %s %s", self.address_string(), self.requestline, code)


class _PooledWSGIServer(BaseWSGIServer):
    """werkzeug's WSGI server with requests handled by a fixed thread pool."""

    multithread = True

    def __init__(self, sock: socket.socket, app: Any, workers: int) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(host, port, app, handler=_RequestHandler, fd=sock.fileno())
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wattline-dashboard")

    def process_request(self, request, client_address) -> None:
        self._pool.submit(self._handle, request, client_address)

    def _handle(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001  # a broken client connection must not kill the pool thread
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def bind_socket(host: str, port: int) -> socket.socket:
    """Open a listening TCP socket on ``host:port`` (port 0 picks a free port).

    Raises
    ------
    PortInUseError
        When the port is taken.
    DashboardError
        When the address cannot be used for another reason (unknown host, no permission); the message says which.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DashboardError(f"cannot resolve dashboard host {host!r}: {exc}; use an address such as 127.0.0.1 or 0.0.0.0") from exc
    family, _type, _proto, _name, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Like werkzeug: allow a restart while old connections are in TIME_WAIT, but not two listeners.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(host, port) from exc
        if exc.errno == errno.EACCES:
            raise DashboardError(
                f"no permission to listen on port {port} of {host}; ports below 1024 need privileges, choose another "
                "with --port"
            ) from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise DashboardError(f"dashboard host {host!r} is not an address of this machine; use 127.0.0.1 or 0.0.0.0") from exc
        raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class DashboardServer:
    """A running (or ready to run) dashboard web server.

    Parameters
    ----------
    app : dash.Dash or WSGI app
        From :func:`dashboard.app.create_app`.
    host : str
        Interface to listen on; ``0.0.0.0`` serves the whole network.
    port : int
        TCP port; 0 picks a free one (see :attr:`port`).
    workers : int
        Request threads.

    Raises
    ------
    PortInUseError
        At construction, when the port is taken (so a caller fails before starting anything else).

    Examples
    --------
    >>> with DashboardServer(create_app("plant.db"), port=0) as server:  # doctest: +SKIP
    ...     print(server.url)
    """

    def __init__(self, app: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, workers: int = 8) -> None:
        self.app = app
        self.host = host
        wsgi = getattr(app, "server", app)
        sock = bind_socket(host, port)
        try:
            self._server = _PooledWSGIServer(sock, wsgi, workers)
        finally:
            sock.close()  # the server works on its own duplicate of the descriptor
        self.port: int = int(self._server.port)
        self._thread: threading.Thread | None = None
        self._stop_lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        """Address to open in a browser."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def start(self) -> DashboardServer:
        """Serve in a daemon thread; returns immediately."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="wattline-dashboard", daemon=True
            )
            self._thread.start()
            log.info("dashboard at %s", self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, wait for requests in progress, close the socket and the app's store (idempotent)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout)
                self._thread = None
            self._server.server_close()
            if hasattr(self.app, "server"):  # a Dash app: release its store
                from dashboard.app import close_store

                close_store(self.app)

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_dashboard(
    app: Any,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    stop_event: threading.Event | None = None,
    *,
    workers: int = 8,
) -> DashboardServer:
    """Start serving ``app`` in a background thread and return at once.

    Stop it with the returned server's :meth:`DashboardServer.stop`, or by setting ``stop_event`` (a watcher thread
    then stops it). Stopping lets requests in progress finish and closes the socket and the app's store.

    Parameters
    ----------
    app : dash.Dash
        From :func:`dashboard.app.create_app`.
    host, port : str, int
        Where to listen; port 0 picks a free port (read it from the returned server's ``port``).
    stop_event : threading.Event, optional
        Setting it stops the server.
    workers : int
        Request threads.

    Returns
    -------
    DashboardServer
        The running server (``url``, ``port``, ``stop()``).

    Raises
    ------
    PortInUseError
        When the port is taken (raised before anything is served).
    """
    server = DashboardServer(app, host, port, workers=workers).start()
    if stop_event is not None:
        def watch() -> None:
            stop_event.wait()
            server.stop()

        threading.Thread(target=watch, name="wattline-dashboard-stop", daemon=True).start()
    return server
