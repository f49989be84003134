"""``wattline users add|remove|passwd|list``: the dashboard's users file (see :mod:`dashboard.users`).

Passwords are read from the terminal (asked twice, not echoed), from ``--password-file`` (a 0600 file, for scripts)
or made at random with ``--random`` and printed once; never taken from the command line, where other users of the
machine could read them in the process list, and never logged.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

DEFAULT_USERS_FILE = "wattline-users.json"

users_app = typer.Typer(help="Manage the dashboard's users (roles: plant_manager, engineer, cdo, admin).",
                        no_args_is_help=True)

UsersOption = typer.Option(Path(DEFAULT_USERS_FILE), "--users", "-u", help="Users file (JSON, mode 600).",
                           dir_okay=False)


def _password(password_file: Path | None, random: bool) -> tuple[str, bool]:
    """(password, made at random)."""
    from core.config import read_secret_file
    from dashboard.users import check_password, new_password

    if random and password_file is not None:
        from core.errors import ConfigError

        raise ConfigError("give either --random or --password-file, not both")
    if random:
        return new_password(), True
    if password_file is not None:
        return check_password(read_secret_file(password_file, "password")), False
    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return check_password(password), False


@users_app.command("add")
def add(
    name: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option(..., "--role", "-r", help="plant_manager, engineer, cdo (all sites) or admin (all sites)."),
    site: list[str] = typer.Option([], "--site", help="Site id the user may see (repeat for several); plant managers and engineers need one."),
    users: Path = UsersOption,
    password_file: Path | None = typer.Option(None, "--password-file", help="Read the password from this file (mode 600).", dir_okay=False),
    random: bool = typer.Option(False, "--random", help="Make a random password and print it once."),
) -> None:
    """Add a user."""
    from dashboard.users import UsersFile, check_name, check_role_sites

    check_name(name)
    check_role_sites(role, site)  # before asking for a password
    password, made = _password(password_file, random)
    user = UsersFile(users).add(name, role, site, password)
    scope = "all sites" if user.all_sites else ", ".join(user.sites)
    typer.echo(f"added {user.name} ({user.role}, {scope}) to {users}")
    if made:
        typer.echo(f"password: {password}   (shown once; change it with 'wattline users passwd {name}')")


@users_app.command("remove")
def remove(name: str = typer.Argument(..., help="Login name."), users: Path = UsersOption) -> None:
    """Remove a user; their open sessions end at their next request."""
    from dashboard.users import UsersFile

    UsersFile(users).remove(name)
    typer.echo(f"removed {name} from {users}")


@users_app.command("passwd")
def passwd(
    name: str = typer.Argument(..., help="Login name."),
    users: Path = UsersOption,
    password_file: Path | None = typer.Option(None, "--password-file", help="Read the password from this file (mode 600).", dir_okay=False),
    random: bool = typer.Option(False, "--random", help="Make a random password and print it once."),
) -> None:
    """Set a new password; the user's open sessions end."""
    from dashboard.users import UsersError, UsersFile

    file = UsersFile(users)
    if file.get(name) is None:
        raise UsersError(f"no user {name!r} in {users}; 'wattline users list' shows the users")
    password, made = _password(password_file, random)
    file.set_password(name, password)
    typer.echo(f"password of {name} changed")
    if made:
        typer.echo(f"password: {password}   (shown once)")


@users_app.command("list")
def list_users(users: Path = UsersOption,
               as_json: bool = typer.Option(False, "--json", help="Print one JSON array.")) -> None:
    """List users with role and sites (never passwords or hashes)."""
    from dashboard.users import UsersFile

    rows = [u.public() for u in sorted(UsersFile(users).users().values(), key=lambda u: u.name)]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"no users in {users}; add one with 'wattline users add NAME --role ROLE'")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        typer.echo(f"{r['name']:<{width}}  {r['role']:<13}  {', '.join(r['sites']) or 'all sites'}")
