"""``wattline collect | check | discover | certs``: the OPC UA collector's commands."""

import typer


def register(app: typer.Typer) -> None:
    """Add the collector commands to the main app."""
