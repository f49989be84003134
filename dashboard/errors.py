"""Errors the dashboard raises on purpose."""

from __future__ import annotations

from core.errors import WattlineError


class DashboardError(WattlineError):
    """Base of every dashboard error: the web server cannot start or the app is misconfigured."""


class PortInUseError(DashboardError):
    """The dashboard's TCP port is taken by another program.

    Attributes
    ----------
    host : str
        Interface the dashboard tried to listen on.
    port : int
        The port that is in use.
    """

    # A usage problem: the person fixes it with an option (--port), like a configuration error.
    exit_code = 2

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = int(port)
        super().__init__(
            f"dashboard port {self.port} on {host} is already in use (another Wattline dashboard or program is "
            f"listening there); stop that program or choose a free port with --port, e.g. --port {self.port + 1}"
        )
