"""Fixtures for the dashboard tests: a temporary SQLite store."""

from __future__ import annotations

import pytest

from core.storage.sqlite import SQLiteStore


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "plant.db")
    yield s
    s.close()
