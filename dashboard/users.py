"""Dashboard users: who may log in, with which role, for which sites.

The users file is JSON, readable by its owner only (mode 0600; a file that others can read is refused, like every
secret file in Wattline, :func:`core.config.read_secret_file`). Passwords are stored as argon2id hashes
(``argon2-cffi``), never in clear; nothing here logs a password or a hash. ``wattline users add|remove|passwd|list``
manages the file (:mod:`wattline.cli_users`).

Roles
-----
- ``plant_manager``: the sites listed for the user (at least one).
- ``engineer``: the sites listed for the user (at least one); also sees the stored-series page.
- ``cdo`` (chief data officer): every site.
- ``admin``: every site and every page.

File format::

    {"version": 1, "users": {"anna": {"role": "plant_manager", "sites": ["north"], "password": "$argon2id$..."}}}
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from core.config import read_secret_file
from dashboard.errors import DashboardError

ROLES = ("plant_manager", "engineer", "cdo", "admin")
#: Roles that see every site (a site list is not given for them).
ALL_SITES_ROLES = ("cdo", "admin")
ROLE_LABELS = {"plant_manager": "Plant manager", "engineer": "Engineer", "cdo": "Chief data officer", "admin": "Admin"}
MIN_PASSWORD = 10
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FORMAT_VERSION = 1


class UsersError(DashboardError):
    """The users file or a users command is wrong (usage: exit code 2)."""

    exit_code = 2


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id with the library's current recommended parameters


@dataclass(frozen=True)
class User:
    """A dashboard user.

    Parameters
    ----------
    name : str
        Login name.
    role : str
        One of :data:`ROLES`.
    sites : tuple of str
        Site ids the user may see; empty for the roles that see all sites (:data:`ALL_SITES_ROLES`).
    password_hash : str
        argon2id hash (never the password).
    """

    name: str
    role: str
    sites: tuple[str, ...]
    password_hash: str

    @property
    def all_sites(self) -> bool:
        """True when the role sees every site."""
        return self.role in ALL_SITES_ROLES

    def may_see(self, site: str | None) -> bool:
        """True when the user may see data of ``site``."""
        return self.all_sites or (site is not None and site in self.sites)

    @property
    def fingerprint(self) -> str:
        """A short value that changes when the password changes (a session carries it, so passwd ends sessions)."""
        return self.password_hash[-16:]

    def public(self) -> dict:
        """Name, role and sites (what ``wattline users list`` prints): no hash."""
        return {"name": self.name, "role": self.role, "sites": list(self.sites)}


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UsersError(f"user name {name!r} is not valid: use 1-64 letters, digits and _ . @ - (starting with a "
                         "letter or digit)")
    return name


def check_role_sites(role: str | None, sites) -> tuple[str, ...]:
    """Validate a role and its sites; returns the sites as a sorted tuple."""
    if role not in ROLES:
        raise UsersError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    sites = tuple(sorted({str(s).strip() for s in (sites or ()) if str(s).strip()}))
    for site in sites:
        if not _SITE_RE.match(site):
            raise UsersError(f"site id {site!r} is not valid: use the site ids of the plant file (letters, digits, _ . -)")
    if role in ALL_SITES_ROLES and sites:
        raise UsersError(f"role {role} sees every site; do not give --site for it")
    if role not in ALL_SITES_ROLES and not sites:
        raise UsersError(f"role {role} needs at least one site: add --site SITE_ID (repeat it for several)")
    return sites


def check_password(password: str | None) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UsersError(f"the password must have at least {MIN_PASSWORD} characters")
    return password


def new_password() -> str:
    """A random password for a person to type once (about 96 bits)."""
    return secrets.token_urlsafe(12)


class UsersFile:
    """The users file: read (and re-read when it changes on disk), edited and written atomically with mode 0600.

    Parameters
    ----------
    path : path-like
        The JSON file. It need not exist until a user is added.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._users: dict[str, User] = {}

    # -- reading -------------------------------------------------------------------------------------------------------
    def _read(self) -> dict[str, User]:
        if not self.path.exists():
            return {}
        text = read_secret_file(self.path, "users")  # refuses a file that group or others can read
        try:
            data = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            raise UsersError(f"users file {self.path}: not valid JSON at line {exc.lineno}: {exc.msg}; fix it or "
                             "recreate it with 'wattline users add'") from None
        if not isinstance(data, dict) or not isinstance(data.get("users", {}), dict):
            raise UsersError(f"users file {self.path}: expected {{\"version\": 1, \"users\": {{...}}}}")
        users = {}
        for name, entry in data.get("users", {}).items():
            where = f"users file {self.path}, user {name!r}"
            if not isinstance(entry, dict):
                raise UsersError(f"{where}: expected a mapping with role, sites and password")
            try:
                check_name(name)
                sites = check_role_sites(entry.get("role"), entry.get("sites") or ())
            except UsersError as exc:
                raise UsersError(f"{where}: {exc}") from None
            hashed = entry.get("password")
            if not isinstance(hashed, str) or not hashed.startswith("$argon2"):
                raise UsersError(f"{where}: key 'password' must be an argon2 hash; set it with 'wattline users passwd "
                                 f"{name}'")
            users[name] = User(name, entry["role"], sites, hashed)
        return users

    def users(self) -> dict[str, User]:
        """Current users by name; the file is re-read when its size or modification time changed."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._users = self._read()
                self._stamp = stamp
            return dict(self._users)

    def get(self, name: str) -> User | None:
        """The user called ``name`` or None."""
        return self.users().get(name)

    # -- checking a password --------------------------------------------------------------------------------------------
    def authenticate(self, name: str, password: str) -> User | None:
        """The user when ``password`` is right, else None (an unknown name costs one hash too: no timing hint)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        user = self.get(name) if isinstance(name, str) else None
        hasher = _hasher()
        if user is None:
            with contextlib.suppress(VerificationError, InvalidHashError):
                hasher.verify(_DUMMY_HASH.get(), password or "")
            return None
        try:
            hasher.verify(user.password_hash, password or "")
        except (VerificationError, InvalidHashError):
            return None
        return user

    # -- editing -------------------------------------------------------------------------------------------------------
    def add(self, name: str, role: str, sites=(), password: str | None = None) -> User:
        """Add a user; raises UsersError when the name is taken."""
        check_name(name)
        sites = check_role_sites(role, sites)
        users = self._read()
        if name in users:
            raise UsersError(f"user {name!r} exists already in {self.path}; use 'wattline users passwd {name}' or "
                             f"'wattline users remove {name}'")
        users[name] = User(name, role, sites, _hasher().hash(check_password(password)))
        self._write(users)
        return users[name]

    def remove(self, name: str) -> None:
        """Remove a user (their sessions end at their next request)."""
        users = self._read()
        if name not in users:
            raise UsersError(f"no user {name!r} in {self.path}; 'wattline users list' shows the users")
        del users[name]
        self._write(users)

    def set_password(self, name: str, password: str) -> User:
        """Change a password (the user's open sessions end)."""
        users = self._read()
        if name not in users:
            raise UsersError(f"no user {name!r} in {self.path}; 'wattline users list' shows the users")
        old = users[name]
        users[name] = User(old.name, old.role, old.sites, _hasher().hash(check_password(password)))
        self._write(users)
        return users[name]

    def _write(self, users: dict[str, User]) -> None:
        data = {"version": FORMAT_VERSION,
                "users": {u.name: {"role": u.role, "sites": list(u.sites), "password": u.password_hash}
                          for u in sorted(users.values(), key=lambda u: u.name)}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written to a 0600 temporary file in the same folder, then renamed: never a moment with a readable file.
        fd, tmp = tempfile.mkstemp(prefix=".users-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1)
                out.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._stamp = None


class _LazyDummy:
    """A hash of a random password, made once, verified against when the user name is unknown."""

    def __init__(self) -> None:
        self._value: str | None = None

    def get(self) -> str:
        if self._value is None:
            self._value = _hasher().hash(secrets.token_urlsafe(16))
        return self._value


_DUMMY_HASH = _LazyDummy()


def secret_key_for(users_path: str | os.PathLike) -> bytes:
    """The key that signs session cookies: ``$WATTLINE_DASHBOARD_SECRET_FILE`` or ``<users file>.secret``.

    The file beside the users file is created (0600, 32 random bytes) when missing, so every worker of one dashboard
    and every restart sign alike; delete it to end every session.
    """
    env = os.environ.get("WATTLINE_DASHBOARD_SECRET_FILE")
    path = Path(env) if env else Path(str(Path(users_path).expanduser()) + ".secret")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a 0600 temporary file, then linked into place: a worker starting at the same moment either
        # finds no file or a complete one, and the first link wins.
        fd, tmp = tempfile.mkstemp(prefix=".secret-", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(secrets.token_hex(32) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    key = read_secret_file(path, "dashboard session secret")
    if len(key) < 32:
        raise UsersError(f"dashboard session secret file {path} holds fewer than 32 characters; delete it to make a "
                         "new one")
    return key.encode()
