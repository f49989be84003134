"""``wattline users``: the users file from the command line (a subprocess, as an administrator runs it)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration]  # the wattline CLI in child processes


def wattline(*args, input_text=None):
    return subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=120,
                          input=input_text)


def test_add_list_passwd_remove(tmp_path):
    users = tmp_path / "users.json"
    added = wattline("users", "add", "anna", "--role", "plant_manager", "--site", "north", "--users", str(users),
                     "--random")
    assert added.returncode == 0, added.stderr
    password = added.stdout.split("password: ")[1].split()[0]
    assert stat.S_IMODE(os.stat(users).st_mode) == 0o600 and password not in users.read_text()
    secret = tmp_path / "pw"
    secret.write_text("a-new-password-42\n")
    os.chmod(secret, 0o600)
    assert wattline("users", "passwd", "anna", "--users", str(users), "--password-file", str(secret)).returncode == 0
    from dashboard.users import UsersFile

    assert UsersFile(users).authenticate("anna", "a-new-password-42") is not None
    assert UsersFile(users).authenticate("anna", password) is None
    listed = json.loads(wattline("users", "list", "--users", str(users), "--json").stdout)
    assert listed == [{"name": "anna", "role": "plant_manager", "sites": ["north"]}]
    assert wattline("users", "remove", "anna", "--users", str(users)).returncode == 0
    assert json.loads(wattline("users", "list", "--users", str(users), "--json").stdout) == []


def test_errors_name_the_problem(tmp_path):
    users = tmp_path / "users.json"
    missing_site = wattline("users", "add", "bob", "--role", "engineer", "--users", str(users), "--random")
    assert missing_site.returncode == 2 and "--site" in missing_site.stderr and "Traceback" not in missing_site.stderr
    unknown = wattline("users", "remove", "ghost", "--users", str(users))
    assert unknown.returncode == 2 and "ghost" in unknown.stderr
    prompt = wattline("users", "add", "bob", "--role", "cdo", "--users", str(users), input_text="short\nshort\n")
    assert prompt.returncode == 2 and "at least" in prompt.stderr
