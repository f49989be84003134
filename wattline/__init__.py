"""Wattline's command line: the one place that wires collectors, simulator, store, analytics and dashboard together."""

__version__ = "0.1.0"
