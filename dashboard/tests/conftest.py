"""Fixtures for the dashboard tests: a temporary SQLite store and a users file with one user per role."""

from __future__ import annotations

import pytest

from core.storage.sqlite import SQLiteStore
from dashboard.tests.helpers import make_users


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "plant.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def users_path(tmp_path_factory):
    """A users file (mode 0600) with the users of helpers.TEST_USERS, made once (hashing is slow on purpose)."""
    path = tmp_path_factory.mktemp("users") / "users.json"
    make_users(path)
    return path
