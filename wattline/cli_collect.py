"""``wattline collect | check | discover | certs``: the OPC UA collector's commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from core.config import FrozenModel

ConfigArg = typer.Option(..., "--config", "-c", help="Collector YAML file (see collectors/opcua/sample.yaml).", dir_okay=False)
StoreOpt = typer.Option(
    None, "--store", "-s", help="Store URL (overrides the config's `store`; default wattline.db): a path, sqlite:///path or influx://...",
)


ShardOpt = typer.Option(
    None, "--shard", help="INDEX/COUNT, e.g. 0/2: this process collects only its share of the file's servers "
    "(overrides the config's `shard`; see collectors/opcua/shard.py).",
)


def collect(config: Path = ConfigArg, store: str | None = StoreOpt, shard: str | None = ShardOpt) -> None:
    """Run the collector until SIGTERM or Ctrl-C; everything received is stored or spooled before it exits."""
    import asyncio
    import signal

    from collectors.opcua.collector import Collector
    from collectors.opcua.config import read_collector_config
    from core.storage import open_store

    cfg = read_collector_config(config, {"store": store, "shard": shard})

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with open_store(cfg.store) as st:
            collector = Collector(cfg, st)
            typer.echo(f"{cfg.name}: collecting from {len(cfg.servers)} server(s) "
                       f"({', '.join(s.name for s in cfg.servers)}) into {st.description}; Ctrl-C stops", err=True)
            await collector.run(stop)
            s = collector.stats
            typer.echo(f"stopped: {s.values_received} values received, {s.values_written} stored, "
                       f"{s.values_spooled} spooled", err=True)

    asyncio.run(main())


def check(
    config: list[Path] = typer.Option(
        ..., "--config", "-c", dir_okay=False, metavar="FILE",
        help="Collector YAML file; give it once per collector of the plant to also refuse nodes that two of them "
        "collect into the same store.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate the config(s) and connectivity (endpoints, security, login, every node readable) without collecting."""
    import asyncio
    from dataclasses import asdict

    from collectors import CollectorError
    from collectors.opcua.check import format_check_table, get_check_report
    from collectors.opcua.config import read_collector_config
    from collectors.opcua.shard import find_overlaps
    from core.errors import ConfigError

    configs = {str(path): read_collector_config(path) for path in config}
    overlaps = find_overlaps(configs)
    if overlaps:
        raise ConfigError("; ".join(overlaps))
    results = [r for cfg in configs.values() for r in asyncio.run(get_check_report(cfg))]
    if as_json:
        typer.echo(json.dumps([{k: v for k, v in asdict(r).items() if k != "notices"} for r in results], indent=1))
    else:
        typer.echo(format_check_table(results))
    failed = [r.name for r in results if not r.ok]
    if failed:
        raise CollectorError(f"check failed for server(s): {', '.join(failed)} (see the table above)")


class DiscoverSettings(FrozenModel):
    """``wattline discover --config FILE``: the same settings as the options (options win)."""

    endpoint: str | None = None
    out: Path | None = None
    mapping: Path | None = None
    name: str | None = None


def discover(
    endpoint: str | None = typer.Argument(None, help="Server endpoint, opc.tcp://host:port/path (or `endpoint:` in --config)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the starter config here (default: print it).", dir_okay=False),
    mapping: Path | None = typer.Option(
        None, "--mapping", help="YAML table BrowseName -> {measurement, field, unit, counter} replacing the built-in one."
    ),
    name: str | None = typer.Option(None, "--name", help="Server name in the config (default from the host)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file with these settings (keys: endpoint, out, mapping, name); options override it.", dir_okay=False
    ),
) -> None:
    """Browse a server and write a starter collector config: one group per machine, units from EngineeringUnits."""
    import asyncio

    from collectors.opcua.discover import get_starter_config, render_starter_yaml
    from core.config import read_config, read_yaml
    from core.errors import ConfigError

    given = {"endpoint": endpoint, "out": out, "mapping": mapping, "name": name}
    if config is not None:
        settings = read_config(DiscoverSettings, config, overrides={k: str(v) if isinstance(v, Path) else v for k, v in given.items()})
    else:
        settings = DiscoverSettings(**{k: v for k, v in given.items() if v is not None})
    endpoint, out, mapping, name = settings.endpoint, settings.out, settings.mapping, settings.name
    if not endpoint:
        raise ConfigError("which server? give its endpoint: wattline discover opc.tcp://host:port")
    if not endpoint.startswith("opc.tcp://"):
        raise ConfigError(f"{endpoint!r} is not an OPC UA endpoint; write opc.tcp://host:port")
    if out is not None and out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it or choose another --out")
    table = None
    if mapping is not None:
        table, _ = read_yaml(mapping)
        if not isinstance(table, dict) or not all(isinstance(v, dict) and "measurement" in v and "field" in v
                                                  for v in table.values()):
            raise ConfigError(f"{mapping}: expected BrowseName: {{measurement: ..., field: ...}} entries")
    notes: list[str] = []
    starter = asyncio.run(get_starter_config(endpoint, mapping=table, server_name=name, notes=notes))
    text = render_starter_yaml(starter, notes)
    if out is None:
        typer.echo(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        groups = starter["servers"][0]["groups"]
        typer.echo(f"wrote {out}: {len(groups)} groups, {sum(len(g['nodes']) for g in groups)} nodes", err=True)


def certs(
    config: Path | None = typer.Option(None, "--config", "-c", help="Collector YAML; default certs/ in the current folder.", dir_okay=False),
    renew: bool = typer.Option(False, "--renew", help="Generate a new client key and certificate (the server must trust it again)."),
) -> None:
    """Show the client certificate(s) the collector uses (creating them when missing), or renew them."""
    from collectors.opcua.certs import describe_certificate, ensure_client_certificate
    from collectors.opcua.config import SecurityConfig, read_collector_config

    if config is not None:
        cfg = read_collector_config(config)
        securities = {(s.security.certificate, s.security.private_key): s.security for s in cfg.servers}
    else:
        base = Path.cwd()
        sec = SecurityConfig()
        sec = sec.model_copy(update={"certificate": str(base / sec.certificate), "private_key": str(base / sec.private_key)})
        securities = {(sec.certificate, sec.private_key): sec}
    for sec in securities.values():
        cert, key, created = ensure_client_certificate(sec, renew=renew)
        info = describe_certificate(cert)
        state = "renewed" if renew else ("created" if created else "existing")
        typer.echo(f"{state} client certificate {cert} (key {key})")
        for k in ("subject", "application_uri", "not_before", "not_after", "expires_in_days", "sha256"):
            typer.echo(f"  {k}: {info[k]}")
        typer.echo(f"  trust folder for server certificates: {sec.trust_folder}")


def register(app: typer.Typer) -> None:
    """Add the collector commands to the main app."""
    app.command("collect")(collect)
    app.command("check")(check)
    app.command("discover")(discover)
    app.command("certs")(certs)
