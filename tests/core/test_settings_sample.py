"""The commented sample settings file is the documentation: its commented values must be the real defaults."""

import re
from pathlib import Path

import yaml

from wattline.settings import AppSettings, read_app_settings

SAMPLE = Path(__file__).resolve().parents[2] / "wattline" / "sample.yaml"


def _uncommented(text: str) -> str:
    # Turn '# key: value' lines (not prose comments, which have no ': ' value shape at the start) into YAML.
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        body = stripped[2:] if stripped.startswith("# ") else stripped
        if stripped.startswith("# ") and re.match(r"^[a-z_][a-z0-9_]*:( |$)", body):
            lines.append(indent + body)
        elif not stripped.startswith("#"):
            lines.append(line)
    return "\n".join(lines)


def test_sample_as_shipped_is_valid_and_gives_defaults():
    assert read_app_settings(SAMPLE) == AppSettings()


def test_commented_values_are_the_defaults(tmp_path):
    data = yaml.safe_load(_uncommented(SAMPLE.read_text()))
    assert AppSettings.model_validate(data) == AppSettings()
    assert data["demo"]["machines"] == AppSettings().demo.machines
