"""Login, sessions and the gate in front of every route of the dashboard's Flask server.

- Every request passes :func:`_gate` first (it runs before Dash's own hooks): without a valid session a page request
  (GET of a path not starting with ``/_``, ``/export`` or ``/report``) is redirected to ``/login``, everything else
  (``/_dash-layout``, ``/_dash-dependencies``, ``/_dash-update-component``, component bundles, exports) gets 401 and no
  data. Only ``/login`` and the stylesheet folder ``/assets/`` (CSS, no data) are public.
- Sessions are Flask's signed cookies (key from :func:`dashboard.users.secret_key_for`, shared by the workers), marked
  ``HttpOnly`` and ``SameSite=Strict``, ``Secure`` when the dashboard is served over HTTPS (``secure_cookies``). A
  session carries the user name and a fingerprint of the password hash: removing a user or changing the password
  ends the sessions at the next request.
- CSRF: the session cookie is ``SameSite=Strict``, so a cross-site page cannot make the browser send it; in addition
  every state-changing request (POST, PUT, PATCH, DELETE) must carry an ``Origin`` (or, failing that, ``Referer``) of
  this server, else 403. Browsers set ``Origin`` on every POST, including Dash's ``fetch`` calls, so this needs no
  change in Dash's renderer (a header token would need a client-side hook in every callback request). The login and
  logout forms also carry a per-session token (login CSRF cannot rely on a session cookie that does not exist yet).
- Failed logins are rate-limited per client address and per user name (:class:`LoginLimiter`, the dashboard's one
  rate-limit mechanism :mod:`dashboard.ratelimit`): after
  ``max_failures`` within ``window_s`` the login answers 429 with ``Retry-After``. With a shared file (the dashboard's
  cache folder, as ``wattline dashboard`` runs it) the count is kept there, so every gunicorn worker enforces the same
  limit; without one it lives in the process.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from urllib.parse import quote, urlsplit

from flask import current_app, g, redirect, request, session

from dashboard.ratelimit import WindowLimiter
from dashboard.users import User, UsersFile, secret_key_for

log = logging.getLogger(__name__)

#: Key of the users file in ``flask_app.extensions``.
EXTENSION = "wattline_users"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PUBLIC_PATHS = ("/login",)
PUBLIC_PREFIXES = ("/assets/",)
#: Paths that are not pages even though they do not start with "/_" (answered 401, not redirected).
API_PREFIXES = ("/_", "/export", "/report", "/static/", "/api/")
#: ``flask_app.config`` key: path prefixes whose blueprints check ``Authorization: Bearer`` tokens themselves
#: (:mod:`dashboard.api_mount`); a request there with a Bearer header skips the session gate.
TOKEN_API_KEY = "WATTLINE_TOKEN_API_PREFIXES"
SESSION_HOURS = 12


class LoginLimiter(WindowLimiter):
    """Failed login attempts per key (client address, user name) in a sliding window
    (:class:`dashboard.ratelimit.WindowLimiter`, shared by the workers through ``path``).

    Parameters
    ----------
    max_failures : int
        Failures allowed within ``window_s`` per key.
    window_s : float
        Length of the window [s].
    path : path-like, optional
        SQLite file the failures are kept in, shared by every worker process (WAL); None: in this process only. A
        file that cannot be used falls back to this process's count (a login is never refused for a broken file).
    """

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, path: str | os.PathLike | None = None) -> None:
        super().__init__(max_failures, window_s, path, table="login_failures", what="failed logins")

    @property
    def max_failures(self) -> int:
        return self.max_events

    def failed(self, keys, now: float | None = None) -> None:
        """Record one failure for each key."""
        self.record(keys, now)

    def succeeded(self, name_key: str) -> None:
        """Forget the failures of a user name after a good login."""
        self.forget(name_key)


def install_auth(app, users: UsersFile, *, secure_cookies: bool = False, limiter: LoginLimiter | None = None) -> None:
    """Put the login gate in front of every route of ``app`` (a Dash app) and add ``/login`` and ``/logout``."""
    server = app.server
    server.secret_key = secret_key_for(users.path)
    server.config.update(
        SESSION_COOKIE_NAME="wattline_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=bool(secure_cookies),
        PERMANENT_SESSION_LIFETIME=SESSION_HOURS * 3600,
    )
    server.extensions[EXTENSION] = users
    limiter = limiter or LoginLimiter()
    server.extensions["wattline_login_limiter"] = limiter
    # First of all before-request hooks: a refused request never reaches Dash's own setup or routing.
    server.before_request_funcs.setdefault(None, []).insert(0, _gate)
    server.add_url_rule("/login", "wattline_login", _login_view, methods=["GET", "POST"])
    server.add_url_rule("/logout", "wattline_logout", _logout_view, methods=["POST"])

    @server.after_request
    def _no_store(response):
        # Data answers must not be kept by shared caches or the browser's back button after logout.
        if request.path.startswith(("/_dash-update-component", "/_dash-layout", "/export", "/report")):
            response.headers["Cache-Control"] = "no-store"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


def users_of(server) -> UsersFile:
    return server.extensions[EXTENSION]


def session_user() -> User | None:
    """The logged-in user of this request, or None (an ended or forged session counts as none)."""
    from flask import current_app

    name, fingerprint = session.get("user"), session.get("fp")
    if not name or not fingerprint:
        return None
    user = users_of(current_app).get(name)
    if user is None or not hmac.compare_digest(user.fingerprint, str(fingerprint)):
        session.clear()
        return None
    return user


def csrf_token() -> str:
    """This session's form token (made on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(24)
    return token


def _same_origin() -> bool:
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return False
    return urlsplit(source).netloc.lower() == request.host.lower()


def _is_page(path: str) -> bool:
    return not path.startswith(API_PREFIXES)


def _gate():
    if request.headers.get("Authorization", "").startswith("Bearer ") and request.path.startswith(
            tuple(current_app.config.get(TOKEN_API_KEY, ()))):
        return None  # token APIs authenticate every request themselves; no cookie, so no CSRF
    if request.method not in SAFE_METHODS and not _same_origin():
        log.warning("refused %s %s: no Origin/Referer of this server (possible CSRF)", request.method, request.path)
        return {"error": "cross-site request refused: the Origin header must be this server"}, 403
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    user = session_user()
    if user is None:
        if request.method == "GET" and _is_page(path):
            target = request.full_path if request.query_string else path
            return redirect("/login?next=" + quote(target, safe=""), code=302)
        return {"error": "log in first"}, 401
    g.wattline_user = user
    return None


def _safe_next(value: str | None) -> str:
    """Only a path on this server (never //host or a scheme): no open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _login_view():
    from flask import current_app

    users = users_of(current_app)
    limiter: LoginLimiter = current_app.extensions["wattline_login_limiter"]
    next_path = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if session_user() is not None:
            return redirect(next_path)
        return _login_page(next_path, ""), 200
    name = (request.form.get("username") or "").strip()
    password = request.form.get("password") or ""
    sent = request.form.get("csrf") or ""
    expected = session.get("csrf") or ""
    if not expected or not hmac.compare_digest(sent, expected):
        return _login_page(next_path, "The form expired; please log in again."), 400
    keys = ("ip:" + (request.remote_addr or "?"), "user:" + name.lower())
    wait = limiter.retry_after(keys)
    if wait > 0:
        response = current_app.make_response((_login_page(next_path, f"Too many failed attempts; try again in "
                                                          f"{int(wait) + 1} s."), 429))
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    user = users.authenticate(name, password)
    if user is None:
        limiter.failed(keys)
        log.warning("failed dashboard login for user name %r from %s", name[:64], request.remote_addr)
        return _login_page(next_path, "Wrong user name or password.", name), 401
    limiter.succeeded(keys[1])
    session.clear()  # a fresh session: no fixation of a pre-login session
    session.permanent = True
    session["user"], session["fp"] = user.name, user.fingerprint
    session["csrf"] = secrets.token_urlsafe(24)
    log.info("dashboard login: %s (%s)", user.name, user.role)
    return redirect(next_path)


def _logout_view():
    sent = request.form.get("csrf") or ""
    expected = session.get("csrf") or ""
    if expected and hmac.compare_digest(sent, expected):
        session.clear()
    return redirect("/login")


def _login_page(next_path: str, message: str, name: str = "") -> str:
    from flask import render_template_string

    return render_template_string(_LOGIN_HTML, next=next_path, message=message, csrf=csrf_token(), name=name[:64])


_LOGIN_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Wattline · Log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/wattline.css"></head>
<body><div class="shell">
<header class="header"><div class="brand"><span class="brand-mark">⚡</span><span class="brand-name">Wattline</span></div></header>
<main class="main"><form class="card login-card" method="post" action="/login">
<h1>Log in</h1>
<p class="subtitle">Energy monitoring for your plant. Accounts are made by an administrator with
<code>wattline users add</code>.</p>
{% if message %}<p class="error" id="login-error">{{ message }}</p>{% endif %}
<label for="username">User name</label><input id="username" name="username" value="{{ name }}" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="next" value="{{ next }}">
<button type="submit" id="login-submit">Log in</button>
</form></main></div></body></html>
"""
