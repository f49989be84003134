"""Wattline's plant simulator: a factory with load physics, shift calendars, waste injection and exact ground truth.

Entry points: :func:`simulator.plant.default_plant` / :func:`simulator.plant.read_plant` (the plant),
:func:`simulator.scenario.read_scenario` (the injected waste), :class:`simulator.engine.Simulation` (the vectorised
physics), :class:`simulator.server.PlantServer` (live OPC UA) and :func:`simulator.backfill.backfill` (history into a
store). See ``docs/simulator.md``.
"""
