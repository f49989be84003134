"""The simulator's exceptions: one base class, derived from :class:`core.errors.WattlineError`."""

from __future__ import annotations

from core.errors import WattlineError
from core.plant import PlantError


class SimulatorError(WattlineError):
    """Base of every error the simulator raises on purpose."""


class PlantFileError(SimulatorError, PlantError):
    """A plant or scenario file is invalid; the message names the file, line, key and valid options."""

    exit_code = 2


class PortInUseError(SimulatorError):
    """The OPC UA server cannot listen on the requested host and port."""

    exit_code = 1
