"""Settings of ``wattline serve --config FILE`` (see the commented sample ``deploy/wattline.yaml``).

Frozen pydantic models, read with :func:`read_serve_config`: errors name the file, the line and the key. Every service
is a ``wattline`` sub-command run as a child process, so the arguments of extra services are checked against the
command line itself (:func:`check_wattline_args`): a misspelt command or option fails at start, not at 3 a.m.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from analytics.parallel import ParallelSettings
from core.config import FrozenModel, parse_config, read_yaml
from core.errors import ConfigError
from dashboard.api_limits import ApiLimits

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class RestartSettings(FrozenModel):
    """Backoff between restarts of a service that died (``core.backoff.Backoff``)."""

    min_s: float = Field(1.0, gt=0, description="First delay before a restart [s].")
    max_s: float = Field(60.0, gt=0, description="Longest delay [s]; a service that ran longer than this before dying "
                                                 "starts again from min_s.")

    @model_validator(mode="after")
    def _ordered(self):
        if self.max_s < self.min_s:
            raise ValueError(f"max_s ({self.max_s:g}) must be at least min_s ({self.min_s:g})")
        return self


class CollectorService(FrozenModel):
    """One ``wattline collect --config FILE`` process."""

    name: str = Field(pattern=_NAME)
    config: Path = Field(description="The collector's YAML file (see collectors/opcua/sample.yaml).")
    shard: str | None = Field(None, pattern=r"^\d+/\d+$", description="INDEX/COUNT: collect only this share of the "
                              "file's servers ('wattline collect --shard'); several entries may then share one file.")


class FollowSettings(FrozenModel):
    """The streaming ``wattline analyze --follow`` service (``analytics.follow``; ``true``/``false`` alone is short for
    ``enabled``)."""

    enabled: bool = Field(False, description="Run 'wattline analyze --follow' (streaming) as a service.")
    every: str = Field("5m", description="How often the newest intervals are scored ('analyze --follow --every'): "
                                         "a duration such as 90s, 5m or 1h.")
    window: str = Field("15m", description="Window the new data are scored in ('analyze --follow --window'): a "
                                           "duration that divides a day, such as 1m, 5m or 15m.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data):
        return {"enabled": data} if isinstance(data, bool) else data

    @field_validator("every", "window", mode="before")
    @classmethod
    def _duration(cls, value, info):
        from wattline.cli_follow import parse_every  # the parser of 'analyze --follow --every/--window'

        try:
            seconds = parse_every(value, option="value")
        except ConfigError as exc:  # pydantic puts the key (analytics.follow.every) and the line in front
            raise ValueError(str(exc)) from None
        if seconds < 1:
            raise ValueError(f"value {value!r} is under a second; use e.g. 5m, 90s or 1h")
        if info.field_name == "window" and 86400 % seconds:
            raise ValueError(f"{value!r} ({seconds} s) does not divide a day; use e.g. 1m, 5m, 15m or 1h")
        return str(value).strip()


class AnalyticsSettings(ParallelSettings):
    """Scheduled ``wattline analyze`` runs (and the streaming ``analyze --follow`` where this installation has it);
    ``cluster`` and ``jobs`` (:class:`analytics.parallel.ParallelSettings`) say where their fits run."""

    enabled: bool = True
    every_s: float = Field(3600.0, ge=1, description="Time between the starts of two runs [s].")
    lookback_days: float = Field(7.0, gt=0, description="Each run analyses this many days before its start [d].")
    plant: Path | None = Field(None, description="Plant file (calendars, tariffs, machine kinds).")
    run: str = Field("scheduled", pattern=_NAME, description="Run id the findings are stored under (replaced each run).")
    follow: FollowSettings = Field(FollowSettings(), description="Also run 'wattline analyze --follow' (streaming) "
                                   "as a service, scoring every 'every' in windows of 'window'.")


class OrdersService(FrozenModel):
    """Scheduled ``wattline orders sync``: work orders opened, updated or reopened from the newest findings."""

    enabled: bool = False
    every_s: float = Field(3600.0, ge=1, description="Time between two syncs [s]; set it like analytics.every_s.")
    db: str | None = Field(None, description="Orders database URL (default: beside an embedded store).")
    rules: Path | None = Field(None, description="Orders settings: thresholds, teams, routing rules.")


class DashboardService(FrozenModel):
    """``wattline dashboard`` (gunicorn workers)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8050, ge=1, le=65535)
    users: Path = Field(Path("wattline-users.json"), description="Users file made with 'wattline users add' (mode 600).")
    plant: Path | None = None
    workers: int = Field(2, ge=1, le=64)
    threads: int = Field(4, ge=1, le=64)
    secure_cookies: bool = False
    api_tokens: Path | None = Field(None, description="Tokens file of the JSON API (/api/v1/orders ...); the orders "
                                                      "section's db and rules are passed to the dashboard too.")
    api_limits: ApiLimits = Field(ApiLimits(), description="Limits of /api/v1: query sizes and requests per token per "
                                  "minute ('wattline dashboard --api-limit KEY=VALUE').")


class CommandService(FrozenModel):
    """Any other ``wattline`` sub-command as a service, e.g. ``[orders, sync]``."""

    name: str = Field(pattern=_NAME)
    args: tuple[str, ...] = Field(min_length=1, description="Arguments after 'wattline', e.g. [simulate, serve].")
    every_s: float | None = Field(None, ge=1, description="Run every this many seconds; leave out for a service "
                                                             "that runs until stopped (restarted when it dies).")


class ServeConfig(FrozenModel):
    """Top level of ``wattline serve --config FILE``."""

    store: str = Field("wattline.db", description="Store URL every service uses (a path, sqlite:///path or influx://...).")
    status_file: Path = Field(Path("wattline-serve-status.json"), description="JSON status, rewritten every second.")
    grace_s: float = Field(30.0, gt=0, le=3600, description="Time children get after SIGTERM before SIGKILL [s].")
    restart: RestartSettings = RestartSettings()
    collectors: tuple[CollectorService, ...] = ()
    analytics: AnalyticsSettings = AnalyticsSettings()
    orders: OrdersService = OrdersService()
    dashboard: DashboardService = DashboardService()
    services: tuple[CommandService, ...] = ()

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give a store URL: a file path, sqlite:///path or influx://host:port?...")
        return value

    @model_validator(mode="after")
    def _unique(self):
        names = [c.name for c in self.collectors] + [s.name for s in self.services]
        if self.analytics.enabled:
            names.append("analytics")
            if self.analytics.follow.enabled:
                names.append("analytics-follow")
        if self.orders.enabled:
            names.append("orders")
        if self.dashboard.enabled:
            names.append("dashboard")
        seen = set()
        for name in names:
            if name in seen:
                raise ValueError(f"service name {name!r} is used twice (analytics, analytics-follow, orders and "
                                 "dashboard are taken by the built-in services); give each service its own name")
            seen.add(name)
        return self

    @model_validator(mode="after")
    def _shards(self):
        by_file: dict[Path, list[CollectorService]] = {}
        for c in self.collectors:
            by_file.setdefault(c.config, []).append(c)
        for file, entries in by_file.items():
            shards = [c.shard for c in entries]
            if len(entries) > 1 and (None in shards or len(set(shards)) < len(shards)
                                     or len({s.split("/")[1] for s in shards if s}) > 1):
                raise ValueError(f"collectors {', '.join(c.name for c in entries)} all run {file}: give each its own "
                                 f"shard of one count (shard: 0/{len(entries)}, 1/{len(entries)}, ...), or each its "
                                 "own file; otherwise every value would be collected twice")
        return self


def _wattline_command():
    import typer

    from wattline.cli import app

    return typer.main.get_command(app)


def check_wattline_args(args: list[str] | tuple[str, ...]) -> str | None:
    """Check that ``wattline ARGS`` names an existing command and only its options.

    Returns
    -------
    str or None
        What is wrong (naming the command or option and the valid ones), None when the arguments are valid.
    """
    command = _wattline_command()
    path = ["wattline"]
    tokens = list(args)
    i = 0

    def params(cmd) -> dict:
        return {o: p for p in cmd.params for o in (*p.opts, *p.secondary_opts)}

    while isinstance(getattr(command, "commands", None), dict):  # typer vendors its own click: duck-type a group
        known = params(command)
        while i < len(tokens) and tokens[i].startswith("-"):  # options of a group (wattline -v serve --config F)
            opt = tokens[i].split("=", 1)[0]
            if opt not in known:
                return f"'{' '.join(path)}' has no option {opt}; valid: {', '.join(sorted(known))}"
            param = known[opt]
            takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
            i += 2 if takes_value and "=" not in tokens[i] else 1
        if i >= len(tokens):
            if getattr(command, "invoke_without_command", False):
                return None
            return f"'{' '.join(path)}' needs a sub-command; valid: {', '.join(sorted(command.commands))}"
        sub = command.commands.get(tokens[i])
        if sub is None:
            return f"'{' '.join(path)}' has no command {tokens[i]!r}; valid: {', '.join(sorted(command.commands))}"
        path.append(tokens[i])
        command = sub
        i += 1
    options = params(command)
    for token in tokens[i:]:
        if token.startswith("-") and token != "-":
            opt = token.split("=", 1)[0]
            if opt not in options:
                return f"'{' '.join(path)}' has no option {opt}; valid: {', '.join(sorted(options))}"
    return None


def wattline_option_exists(args: list[str] | tuple[str, ...]) -> bool:
    """True when ``wattline ARGS`` is a valid command line as far as commands and option names go."""
    return check_wattline_args(args) is None


def read_serve_config(path: Path, *, check_files: bool = True) -> ServeConfig:
    """Read and check ``wattline serve`` settings; relative paths are relative to the file's folder.

    Parameters
    ----------
    path : Path
        The YAML file.
    check_files : bool
        Also require the collector configs and the dashboard's users file to exist (at start-up); False checks the
        file alone (a sample config for another machine).

    Raises
    ------
    ConfigError
        Naming the file, the line and the key.
    """
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    cfg = parse_config(ServeConfig, data, str(path), lines)
    base = Path(path).resolve().parent

    def where(*key) -> str:
        line = lines.get(tuple(key))
        return f"{path}:{line}" if line else str(path)

    for i, svc in enumerate(cfg.services):
        problem = check_wattline_args(svc.args)
        if problem:
            raise ConfigError(f"{where('services', i, 'args')}: services[{i}].args: {problem}")
    if cfg.analytics.enabled and cfg.analytics.follow.enabled and not wattline_option_exists(["analyze", "--follow"]):
        raise ConfigError(f"{where('analytics', 'follow')}: analytics.follow: this installation's 'wattline analyze' "
                          "has no --follow (streaming analytics); set follow.enabled: false or update Wattline")
    if cfg.orders.enabled and not wattline_option_exists(["orders", "sync", "--db", "--rules"]):
        raise ConfigError(f"{where('orders', 'enabled')}: orders.enabled: this installation has no 'wattline orders "
                          "sync' (work orders); set enabled: false or update Wattline")
    cfg = _resolved(cfg, base)
    if check_files:
        for i, col in enumerate(cfg.collectors):
            if not col.config.is_file():
                raise ConfigError(f"{where('collectors', i, 'config')}: collectors[{i}].config: {col.config} does not "
                                  "exist; write it with 'wattline discover opc.tcp://host:port --out FILE'")
        if cfg.dashboard.enabled and not cfg.dashboard.users.is_file():
            raise ConfigError(f"{where('dashboard', 'users')}: dashboard.users: {cfg.dashboard.users} does not exist; "
                              f"create it with 'wattline users add NAME --role admin --users {cfg.dashboard.users}' "
                              "or set dashboard.enabled: false")
    return cfg


def _resolved(cfg: ServeConfig, base: Path) -> ServeConfig:
    """Relative paths made absolute against the config file's folder (the store too, when it is a plain path)."""

    def absolute(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p)

    store = cfg.store
    if "://" not in store and not Path(store).is_absolute():
        store = str(base / store)
    elif store.startswith("sqlite:///") and not store.startswith("sqlite:////"):
        rest = store[len("sqlite:///"):]
        store = "sqlite:///" + str(base / rest)
    return cfg.model_copy(update={
        "store": store,
        "status_file": absolute(cfg.status_file),
        "collectors": tuple(c.model_copy(update={"config": absolute(c.config)}) for c in cfg.collectors),
        "analytics": cfg.analytics.model_copy(update={"plant": absolute(cfg.analytics.plant)}),
        "orders": cfg.orders.model_copy(update={"rules": absolute(cfg.orders.rules)}),
        "dashboard": cfg.dashboard.model_copy(update={"users": absolute(cfg.dashboard.users),
                                                      "plant": absolute(cfg.dashboard.plant),
                                                      "api_tokens": absolute(cfg.dashboard.api_tokens)}),
    })


NAME_PATTERN = re.compile(_NAME)
