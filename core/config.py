"""Configuration helpers: frozen pydantic models read from YAML, with errors a person can act on.

Every configuration error names the file, the line and the key path, says what is wrong and lists the valid options
where there is a fixed set::

    collector.yaml:12: servers[0].security.mode: 'Sing' is not valid; valid options: None, Sign, SignAndEncrypt

``${ENV_VAR}`` (or ``${ENV_VAR:-default}``) anywhere in a string value is replaced from the environment. Secrets are
given as ``*_file`` keys pointing to files that only the owner can read (see :func:`read_secret_file`).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class FrozenModel(BaseModel):
    """Base of every configuration model: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class _LineLoader(yaml.SafeLoader):
    """YAML loader that remembers the line of every mapping key and sequence item."""


def _compose_lines(node: yaml.Node, path: tuple = (), lines: dict | None = None) -> dict[tuple, int]:
    lines = {} if lines is None else lines
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            lines[key_path] = key_node.start_mark.line + 1
            _compose_lines(value_node, key_path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _compose_lines(item, (*path, index), lines)
    return lines


def interpolate_env(value: Any, where: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a loaded YAML tree.

    Raises
    ------
    ConfigError
        When a variable is not set and has no default.
    """
    if isinstance(value, dict):
        return {k: interpolate_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{where}: environment variable {name} is not set; export it or write ${{{name}:-default}}"
            )

        return _ENV_PATTERN.sub(substitute, value)
    return value


def format_path(loc: tuple) -> str:
    """Format a pydantic error location as ``servers[0].security.mode``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def describe_validation_error(exc: ValidationError, source: str, lines: dict[tuple, int] | None = None) -> str:
    """Turn a pydantic ValidationError into one line per problem, naming file, line, key path and valid options."""
    messages = []
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    for error in errors:
        loc0 = tuple(error["loc"])
        if error["type"] == "too_short" and any(len(o) > len(loc0) and o[:len(loc0)] == loc0 for o in locs):
            continue  # pydantic adds "at least 1 item" to a list whose item failed: the item's error says it all
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # Tagged unions add the tag to the path; drop parts that are not keys in the file.
        line = None
        if lines:
            for cut in range(len(loc), -1, -1):
                if loc[:cut] in lines:
                    line = lines[loc[:cut]]
                    break
        where = f"{source}:{line}" if line else source
        msg = error["msg"]
        if error["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")  # our validators' messages are written to stand alone
        ctx = error.get("ctx") or {}
        if error["type"] == "extra_forbidden":
            parent = loc[:-1]
            msg = f"unknown key {loc[-1]!r}"
            valid = _valid_keys(exc, parent)
            if valid:
                msg += f"; valid keys here: {', '.join(valid)}"
        elif "expected" in ctx:
            msg = f"{error.get('input')!r} is not valid; valid options: {ctx['expected']}"
        messages.append(f"{where}: {format_path(loc)}: {msg}")
    return "\n".join(messages)


def _valid_keys(exc: ValidationError, parent: tuple) -> list[str]:
    # Best effort: the model class is only known to the caller, so read_config passes it via _model_fields.
    return list(_MODEL_FIELDS.get(parent, []))


_MODEL_FIELDS: dict[tuple, list[str]] = {}


def _collect_fields(model: type[BaseModel], data: Any, path: tuple = ()) -> None:
    """Record the valid keys of each nested model along the loaded data, for 'unknown key' messages."""
    _MODEL_FIELDS[path] = [f.alias or name for name, f in model.model_fields.items()]
    if not isinstance(data, dict):
        return
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in data:
            continue
        for sub in _models_in(info.annotation):
            value = data[key]
            if isinstance(value, dict):
                _collect_fields(sub, value, (*path, key))
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    _collect_fields(sub, item, (*path, key, i))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_models_in(arg))
    return found


def _drop_empty_sections(model: type[BaseModel], data: Any) -> Any:
    """Treat a section whose keys are all commented out (YAML null) as 'all defaults'."""
    if not isinstance(data, dict):
        return data
    cleaned = dict(data)
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in cleaned:
            continue
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if cleaned[key] is None:
                del cleaned[key]
            else:
                cleaned[key] = _drop_empty_sections(annotation, cleaned[key])
    return cleaned


def parse_config(model: type[M], data: Any, source: str = "<config>", lines: dict[tuple, int] | None = None) -> M:
    """Validate already-loaded data against a model; raise ConfigError with actionable lines."""
    try:
        return model.model_validate(_drop_empty_sections(model, data))
    except ValidationError as exc:
        _MODEL_FIELDS.clear()
        _collect_fields(model, data)
        raise ConfigError(describe_validation_error(exc, source, lines)) from None


def read_yaml(path: str | os.PathLike) -> tuple[Any, dict[tuple, int]]:
    """Read a YAML file with ``${ENV}`` interpolation; return the data and a map of key paths to line numbers.

    Raises
    ------
    ConfigError
        When the file is missing, unreadable or not valid YAML (with the line of the syntax error).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; check the path or create it (see the sample config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    lines = _compose_lines(node) if node is not None else {}
    try:
        data = interpolate_env(data if data is not None else {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data, lines


def read_config(model: type[M], path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> M:
    """Read and validate a YAML config file into a frozen model.

    Parameters
    ----------
    model : type
        The pydantic model class.
    path : path-like
        The YAML file.
    overrides : dict, optional
        Top-level values that replace the file's (command-line options win over the file).
    """
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    if overrides:
        data = deep_merge(data, overrides)
    return parse_config(model, data, str(path), lines)


def deep_merge(base: dict, overrides: dict) -> dict:
    """Return ``base`` with ``overrides`` merged in, nested dicts merged key by key; None values are ignored."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_secret_file(path: str | os.PathLike, what: str = "secret") -> str:
    """Read a secret (token, password) from a file that only its owner may read.

    Raises
    ------
    ConfigError
        When the file is missing or readable by group or others (``chmod 600`` fixes it).
    """
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} not found") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what} file {path} is readable by others (mode {oct(mode & 0o777)}); run: chmod 600 {path}")
    return path.read_text(encoding="utf-8").strip()
