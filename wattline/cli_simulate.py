"""``wattline simulate ...``: the plant simulator's commands (owned by the simulator)."""

import typer

simulate_app = typer.Typer(help="Run the plant simulator: serve it over OPC UA or backfill history into a store.", no_args_is_help=True)
