"""Work-order settings: thresholds, teams, routing rules and verification, as frozen pydantic models read from YAML.

The commented sample is ``core/orders/sample.yaml``. Routing rules are tried in order and the first that matches a
finding's site, line, machine, kind and severity names the owner team and the due time; a finding no rule matches
opens an order without a team, in the dispatch queue, where a person assigns it (and the auto-dispatch rate counts it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from core.config import FrozenModel, parse_config, read_yaml
from core.errors import ConfigError
from core.model import METER_FAULT_KINDS, WASTE_KINDS

#: Finding categories a rule may name instead of a kind.
CATEGORIES = ("waste", "anomaly", "data_quality")
SAMPLE_FILE = Path(__file__).with_name("sample.yaml")


def category_of(kind: str) -> str:
    """``"waste"``, ``"data_quality"`` (meter faults) or ``"anomaly"`` (any other kind) for a finding kind."""
    if kind in WASTE_KINDS:
        return "waste"
    if kind in METER_FAULT_KINDS:
        return "data_quality"
    return "anomaly"


def _as_tuple(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        return (str(value),)
    return value


class Thresholds(FrozenModel):
    """A finding pattern opens an order when any threshold given is reached (None switches one off)."""

    min_kwh: float | None = Field(50.0, ge=0, description="Excess energy of the pattern in one sync [kWh].")
    min_cost: float | None = Field(None, ge=0, description="Cost of the excess energy [currency].")
    min_severity: float | None = Field(0.5, ge=0, le=1, description="Severity [0-1]; data-quality findings have no kWh.")


class Team(FrozenModel):
    """An owner team."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    name: str = ""
    email: tuple[str, ...] = ()

    @field_validator("email", mode="before")
    @classmethod
    def _emails(cls, value: Any) -> Any:
        return _as_tuple(value)


class Match(FrozenModel):
    """What a rule matches; each key is one value or a list, an empty key matches everything."""

    site: tuple[str, ...] = ()
    line: tuple[str, ...] = ()
    machine: tuple[str, ...] = Field((), description="Machine ids or site/line/machine paths.")
    kind: tuple[str, ...] = Field((), description="Finding kinds, or the categories waste, anomaly, data_quality.")
    min_severity: float | None = Field(None, ge=0, le=1)

    @field_validator("site", "line", "machine", "kind", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_tuple(value)

    def matches(self, site: str, line: str, machine: str, kind: str, severity: float | None) -> bool:
        """True when a finding of ``machine`` (path ``site/line/id``) with ``kind`` and ``severity`` matches."""
        if self.site and site not in self.site:
            return False
        if self.line and line not in self.line:
            return False
        if self.machine and machine not in self.machine and machine.rsplit("/", 1)[-1] not in self.machine:
            return False
        if self.kind and kind not in self.kind and category_of(kind) not in self.kind:
            return False
        return not (self.min_severity is not None and (severity is None or severity < self.min_severity))


class Rule(FrozenModel):
    """A routing rule: findings that match go to ``team``, due ``due_hours`` after the order opens."""

    match: Match = Match()
    team: str
    due_hours: float | None = Field(None, gt=0, description="Default: the file's default_due_hours.")


class Verification(FrozenModel):
    """How a resolved order is verified."""

    absence_days: float = Field(14.0, gt=0, description="Days the pattern must stay away after the resolution [d].")
    return_fraction: float = Field(0.25, ge=0, lt=1, description=(
        "The waste counts as back when the excess after the fix exceeds this share of the pre-fix waste over the "
        "same time (at least absence_days); smaller leftovers (false alarms, a shorter residual) do not reopen it."))


class Webhook(FrozenModel):
    """A webhook: order events POSTed as JSON, signed with HMAC-SHA256 of the body under a shared secret."""

    url: str = Field(pattern=r"^https?://")
    secret_file: str | None = Field(None, description="File holding the shared secret (mode 600).")
    secret_env: str | None = Field(None, description="Environment variable holding the shared secret.")
    events: tuple[str, ...] = ("opened", "due_soon", "overdue", "escalated")
    max_attempts: int = Field(5, ge=1, le=20)
    retry_min_s: float = Field(1.0, ge=0)
    retry_max_s: float = Field(60.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _one_secret(self) -> Webhook:
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError(f"webhook {self.url}: give exactly one of secret_file or secret_env")
        _check_events(self.events)
        return self


class Email(FrozenModel):
    """E-mail through an SMTP server to the owner team's addresses (``dispatch_to`` for the dispatch queue)."""

    host: str
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    sender: str
    user: str | None = None
    password_file: str | None = Field(None, description="File holding the SMTP password (mode 600).")
    dispatch_to: tuple[str, ...] = ()
    events: tuple[str, ...] = ("opened", "due_soon", "overdue", "escalated")
    max_attempts: int = Field(3, ge=1, le=20)
    retry_min_s: float = Field(1.0, ge=0)
    retry_max_s: float = Field(60.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)

    @field_validator("dispatch_to", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return _as_tuple(value)

    @model_validator(mode="after")
    def _events(self) -> Email:
        _check_events(self.events)
        return self


NOTIFY_EVENTS = ("opened", "due_soon", "overdue", "escalated")


def _check_events(events: tuple[str, ...]) -> None:
    for e in events:
        if e not in NOTIFY_EVENTS:
            raise ValueError(f"unknown event {e!r}; valid events: {', '.join(NOTIFY_EVENTS)}")


class Notifications(FrozenModel):
    """Who hears about orders: webhooks and e-mail when an order opens, comes due, is overdue or escalates."""

    due_soon_hours: float = Field(24.0, gt=0)
    webhooks: tuple[Webhook, ...] = ()
    email: Email | None = None


class OrdersConfig(FrozenModel):
    """The work-order settings file."""

    thresholds: Thresholds = Thresholds()
    teams: tuple[Team, ...] = ()
    rules: tuple[Rule, ...] = ()
    default_due_hours: float = Field(168.0, gt=0)
    verification: Verification = Verification()
    notifications: Notifications = Notifications()

    @model_validator(mode="after")
    def _known_teams(self) -> OrdersConfig:
        ids = [t.id for t in self.teams]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"teams: team id {dupes[0]!r} is given twice; give each team one entry")
        for i, rule in enumerate(self.rules):
            if rule.team not in ids:
                raise ValueError(f"rules[{i}].team: unknown team {rule.team!r}; valid teams: "
                                 f"{', '.join(ids) or '(none: add a teams: section)'}")
            from core.model import EVENT_KINDS

            for kind in rule.match.kind:
                if kind not in EVENT_KINDS + CATEGORIES + ("anomaly",):
                    raise ValueError(f"rules[{i}].match.kind: unknown kind {kind!r}; valid: "
                                     f"{', '.join(EVENT_KINDS + CATEGORIES)}")
        return self

    def team(self, team_id: str) -> Team:
        """The team called ``team_id``; ConfigError listing the teams otherwise."""
        for team in self.teams:
            if team.id == team_id:
                return team
        raise ConfigError(f"unknown team {team_id!r}; valid teams: {', '.join(t.id for t in self.teams) or '(none)'}")

    def route(self, machine: str, kind: str, severity: float | None) -> tuple[int, Rule] | None:
        """The first rule matching a finding of ``machine`` (``site/line/id``), as (index, rule); None when none does."""
        parts = machine.split("/")
        site, line = (parts[0], parts[1]) if len(parts) == 3 else ("", "")
        for i, rule in enumerate(self.rules):
            if rule.match.matches(site, line, machine, kind, severity):
                return i, rule
        return None

    def due_hours(self, rule: Rule | None) -> float:
        """Hours from opening to the due time [h]."""
        return rule.due_hours if rule is not None and rule.due_hours is not None else self.default_due_hours


def read_orders_config(path: str | os.PathLike | None) -> OrdersConfig:
    """Read the settings file (``None``: defaults, no teams, every order waits in the dispatch queue).

    Raises
    ------
    ConfigError
        Naming the file, line and key (an unknown team in a rule lists the valid teams).
    """
    if path is None:
        return OrdersConfig()
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (thresholds, teams, rules, ...)")
    return parse_config(OrdersConfig, data, str(path), lines)
