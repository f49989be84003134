"""Configuration of the OPC UA collector: frozen pydantic models read from one YAML file.

The commented sample ``collectors/opcua/sample.yaml`` documents every key; its commented values are these defaults.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, overload

from pydantic import Field, field_validator, model_validator

from core.config import FrozenModel, read_config, read_secret_file
from core.errors import ConfigError

SECURITY_POLICIES = ("None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss")
SECURITY_MODES = ("None", "Sign", "SignAndEncrypt")
LOGIN_MODES = ("anonymous", "username", "certificate")
TIMESTAMP_SOURCES = ("source", "server", "collector")
TRIGGERS = ("status", "status_value", "status_value_timestamp")
DEADBAND_TYPES = ("none", "absolute", "percent")
COLLECT_MODES = ("subscription", "polling")

_NODE_ID = re.compile(r"^(?:(?:ns=\d+|nsu=[^;]+);)?(?:i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=.+)$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]*$")


def check_node_id(text: str) -> str:
    """Validate the text form of a NodeId (``ns=2;s=Name``, ``nsu=urn:x;i=5``, ``i=2258``)."""
    if not _NODE_ID.match(text.strip()):
        raise ValueError(
            f"{text!r} is not a NodeId; write ns=<index>;s=<name>, nsu=<namespace uri>;s=<name>, ns=<index>;i=<number>"
        )
    return text.strip()


class Deadband(FrozenModel):
    """Data-change filter deadband."""

    type: Literal["none", "absolute", "percent"] = "none"
    value: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _percent_of_range(self) -> Deadband:
        # Servers refuse a percent deadband outside 0..100 (BadDeadbandFilterInvalid): say so at start-up instead.
        if self.type == "percent" and self.value > 100:
            raise ValueError(f"deadband value {self.value:g} is a percentage of the EURange: use 0..100 with type percent")
        return self


class NodeConfig(FrozenModel):
    """One variable to collect; unset keys inherit from its group."""

    node_id: str | None = None
    browse_path: str | None = None
    measurement: str | None = None
    field: str | None = None
    unit: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    drop_tags: list[str] = Field(default_factory=list)
    tags_from_nodes: dict[str, str] = Field(default_factory=dict)
    counter: bool | None = None
    counter_max: float | None = Field(None, gt=0)
    sampling_interval_ms: float | None = Field(None, ge=0)
    queue_size: int | None = Field(None, ge=1)
    deadband: Deadband | None = None

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str | None) -> str | None:
        return None if value is None else check_node_id(value)

    @field_validator("tags_from_nodes")
    @classmethod
    def _tag_nodes(cls, value: dict[str, str]) -> dict[str, str]:
        return {k: check_node_id(v) for k, v in value.items()}

    @field_validator("field")
    @classmethod
    def _field(cls, value: str | None) -> str | None:
        if value is not None and not _FIELD.match(value):
            raise ValueError(f"field {value!r} must be snake_case: lowercase letters, digits and _")
        return value

    @model_validator(mode="after")
    def _one_address(self) -> NodeConfig:
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError("give exactly one of node_id or browse_path")
        return self


class GroupConfig(FrozenModel):
    """A group of nodes sharing defaults (usually one machine)."""

    name: str
    measurement: str = "opcua"
    tags: dict[str, str] = Field(default_factory=dict)
    tags_from_nodes: dict[str, str] = Field(default_factory=dict)
    namespace: str | None = None
    sampling_interval_ms: float = Field(1000.0, ge=0)
    publishing_interval_ms: float = Field(1000.0, gt=0)
    queue_size: int = Field(10, ge=1)
    deadband: Deadband = Deadband()
    trigger: Literal["status", "status_value", "status_value_timestamp"] = "status_value"
    timestamp_source: Literal["source", "server", "collector"] | None = None
    nodes: list[NodeConfig] = Field(min_length=1)

    @field_validator("tags_from_nodes")
    @classmethod
    def _tag_nodes(cls, value: dict[str, str]) -> dict[str, str]:
        return {k: check_node_id(v) for k, v in value.items()}


class SecurityConfig(FrozenModel):
    """Secure channel settings and certificates."""

    policy: Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: str = "certs/wattline-client-cert.der"
    private_key: str = "certs/wattline-client-key.pem"
    trust_folder: str = "certs/trusted"
    auto_trust_first_use: bool = False
    application_uri: str = "urn:wattline:collector"

    @model_validator(mode="after")
    def _consistent(self) -> SecurityConfig:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(
                f"policy {self.policy!r} with mode {self.mode!r}: use policy None with mode None, or a policy such as "
                "Basic256Sha256 with mode Sign or SignAndEncrypt"
            )
        return self


class LoginConfig(FrozenModel):
    """How the session authenticates."""

    mode: Literal["anonymous", "username", "certificate"] = "anonymous"
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    certificate: str | None = None
    private_key: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> LoginConfig:
        if self.mode == "username":
            if not self.username:
                raise ValueError("login mode username needs username")
            if self.password is None and self.password_file is None:
                raise ValueError("login mode username needs password_file (or password from ${ENV})")
        if self.mode == "certificate" and not (self.certificate and self.private_key):
            raise ValueError("login mode certificate needs certificate and private_key")
        return self

    def get_password(self) -> str | None:
        """Return the password (from ``password_file`` when given)."""
        if self.password_file:
            return read_secret_file(self.password_file, "password")
        return self.password


class TimeoutConfig(FrozenModel):
    """Timeouts and reconnect pacing [s]."""

    request_s: float = Field(10.0, gt=0)
    session_s: float = Field(60.0, gt=0)
    keepalive_s: float = Field(1.0, gt=0)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)


class ServerConfig(FrozenModel):
    """One OPC UA server and what to collect from it."""

    name: str
    endpoint: str
    #: Pin this server to one shard (0 .. shard.count - 1); unset: chosen from the server's name (collectors/opcua/shard.py).
    shard: int | None = Field(None, ge=0)
    mode: Literal["subscription", "polling"] = "subscription"
    poll_interval_ms: float = Field(1000.0, gt=0)
    timestamp_source: Literal["source", "server", "collector"] = "source"
    max_items_per_call: int = Field(1000, ge=1)
    security: SecurityConfig = SecurityConfig()
    login: LoginConfig = LoginConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    groups: list[GroupConfig] = Field(min_length=1)

    @field_validator("security", "login", "timeouts", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value  # a section with every key commented out means defaults

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not value.startswith("opc.tcp://"):
            raise ValueError(f"{value!r} is not an OPC UA endpoint; write opc.tcp://host:port[/path]")
        return value


class BufferConfig(FrozenModel):
    """In-memory batching before the store."""

    batch_size: int = Field(5000, ge=1)
    flush_interval_s: float = Field(1.0, gt=0)
    max_memory_values: int = Field(500_000, ge=1)
    shutdown_timeout_s: float = Field(10.0, ge=0)
    retry_interval_s: float = Field(2.0, gt=0)
    write_process: bool = True
    #: Longest wait for one write of the writer process; past it the process is killed and restarted, the batch
    #: spooled [s].
    write_timeout_s: float = Field(120.0, gt=0)


class SpoolConfig(FrozenModel):
    """Bounded on-disk spool used while the store is slow or down."""

    path: str = "wattline-spool"
    max_mb: float = Field(1024.0, gt=0)


class MetricsConfig(FrozenModel):
    """Prometheus ``/metrics`` and JSON ``/status`` endpoint."""

    listen: str | None = "127.0.0.1:9108"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[^:]*:\d{1,5}$", value):
            raise ValueError(f"{value!r}: write host:port, e.g. 127.0.0.1:9108 (port 0 picks a free port)")
        return value


class ShardConfig(FrozenModel):
    """Which share of the file's servers this collector process owns (several processes, one plant-wide file)."""

    index: int = Field(ge=0)
    count: int = Field(ge=1)

    @model_validator(mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, str):  # "1/3", as on the command line
            index, sep, count = value.partition("/")
            if not sep or not index.strip().isdigit() or not count.strip().isdigit():
                raise ValueError(f"shard {value!r}: write INDEX/COUNT, e.g. 0/2 (the first of two collectors)")
            return {"index": int(index), "count": int(count)}
        return value

    @model_validator(mode="after")
    def _in_range(self) -> ShardConfig:
        if self.index >= self.count:
            raise ValueError(f"shard index {self.index} with count {self.count}: the index runs from 0 to "
                             f"{self.count - 1}")
        return self


class CollectorConfig(FrozenModel):
    """A whole collector: servers, buffering, spool, store and observability."""

    name: str = "opcua"
    shard: ShardConfig | None = None
    store: str = "wattline.db"
    status_file: str | None = None
    servers: list[ServerConfig] = Field(min_length=1)
    buffer: BufferConfig = BufferConfig()
    spool: SpoolConfig = SpoolConfig()
    metrics: MetricsConfig = MetricsConfig()

    @field_validator("buffer", "spool", "metrics", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value  # a section with every key commented out means defaults

    @model_validator(mode="after")
    def _unique_names(self) -> CollectorConfig:
        names = [s.name for s in self.servers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"server names must be unique; repeated: {', '.join(sorted(dup))}")
        return self


def read_collector_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> CollectorConfig:
    """Read and validate a collector YAML file.

    Relative file paths in the config (certificates, trust folder, spool, status file, sqlite store) are taken
    relative to the config file's folder, so a config works from any working directory. With a ``shard`` the
    result holds only the servers that shard owns (:func:`collectors.opcua.shard.select_shard`).

    Parameters
    ----------
    path : path-like
        The YAML file.
    overrides : dict, optional
        Top-level values that replace the file's (e.g. ``{"store": "sqlite:///x.db"}``).

    Raises
    ------
    ConfigError
        Naming the file, line, key path and the valid options.
    """
    from collectors.opcua.shard import select_shard

    config = read_config(CollectorConfig, path, overrides)
    return select_shard(resolve_paths(config, Path(path).resolve().parent), str(path))


@overload
def _rel(base: Path, value: str) -> str: ...
@overload
def _rel(base: Path, value: None) -> None: ...
@overload
def _rel(base: Path, value: str | None) -> str | None: ...
def _rel(base: Path, value: str | None) -> str | None:
    """``value`` made absolute against ``base`` (``~`` expanded); None stays None."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def resolve_paths(config: CollectorConfig, base: Path) -> CollectorConfig:
    """Return ``config`` with relative file paths made absolute against ``base``."""
    servers = []
    for server in config.servers:
        sec = server.security.model_copy(
            update={
                "certificate": _rel(base, server.security.certificate),
                "private_key": _rel(base, server.security.private_key),
                "trust_folder": _rel(base, server.security.trust_folder),
            }
        )
        login = server.login.model_copy(
            update={
                "password_file": _rel(base, server.login.password_file),
                "certificate": _rel(base, server.login.certificate),
                "private_key": _rel(base, server.login.private_key),
            }
        )
        servers.append(server.model_copy(update={"security": sec, "login": login}))
    store = config.store
    if "://" not in store:
        store = _rel(base, store)
    elif store.startswith("sqlite:///") and not store.startswith("sqlite:////"):
        store = "sqlite:///" + str(_rel(base, store[len("sqlite:///"):]))
    return config.model_copy(
        update={
            "servers": servers,
            "store": store,
            "status_file": _rel(base, config.status_file),
            "spool": config.spool.model_copy(update={"path": _rel(base, config.spool.path)}),
        }
    )


def parse_collector_config(data: dict[str, Any], source: str = "<config>") -> CollectorConfig:
    """Validate an already-loaded config dict (e.g. from :func:`~collectors.opcua.discover.get_starter_config`)."""
    from core.config import parse_config

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    return parse_config(CollectorConfig, data, source)
