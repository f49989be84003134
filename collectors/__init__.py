"""Wattline collectors: sources that stream plant data into a :class:`core.storage.base.Store`.

Shared machinery that is not specific to one protocol lives here (batching writer, metrics endpoint; the disk
spool, backoff and supervision are in core);
each source has its own folder (``collectors/opcua``).
"""

from core.errors import WattlineError


class CollectorError(WattlineError):
    """A collector cannot start or keep running (runtime problem, exit code 1)."""
