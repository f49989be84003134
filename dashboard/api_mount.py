"""The JSON HTTP APIs served next to the dashboard, mounted in one place: :func:`mount_api`.

APIs under ``/api/`` authenticate each request themselves with ``Authorization: Bearer <token>`` (the tokens file,
:func:`core.orders.api.read_api_tokens`): a CMMS or a script has no browser session. The dashboard's login gate
(:mod:`dashboard.auth`) lets a request with a Bearer header through to the prefixes registered here
(:data:`dashboard.auth.TOKEN_API_KEY`) and nowhere else; a browser cannot send that header cross-site without a CORS
preflight the server never grants, so CSRF does not apply to it. Without a Bearer header the login gate answers as
for any data route (401, never a redirect).
"""

from __future__ import annotations

from typing import Any

from dashboard.auth import TOKEN_API_KEY

API_PREFIX = "/api/v1"


def token_prefix(server, prefix: str) -> None:
    """Let Bearer-token requests under ``prefix`` pass the login gate (the blueprint there must check the token)."""
    prefixes = tuple(server.config.get(TOKEN_API_KEY, ()))
    if prefix not in prefixes:
        server.config[TOKEN_API_KEY] = (*prefixes, prefix)


def rate_limit(server, tokens, per_minute: int | None) -> None:
    """At most ``per_minute`` requests per token within any 60 s on every route under ``/api/v1`` (the read API and
    the orders API alike); more are answered 429 with ``Retry-After``.

    Counted with the dashboard's one rate-limit mechanism (:class:`dashboard.ratelimit.WindowLimiter`), in a file of
    the results cache's folder when the dashboard has one (``wattline dashboard``: shared by every gunicorn worker,
    as the login limit is), else in this process. A request without a known token is not counted: its blueprint
    answers 401.
    """
    if per_minute is None:
        return
    from flask import jsonify, request

    from dashboard.cache import EXTENSION as CACHE
    from dashboard.ratelimit import WindowLimiter

    cache = server.extensions.get(CACHE)
    folder = getattr(cache, "path", None)
    limiter = WindowLimiter(per_minute, 60.0, None if folder is None else folder.parent / "api-requests.sqlite",
                            table="api_requests", what="API requests")

    @server.before_request
    def _per_token():
        if not request.path.startswith(API_PREFIX + "/"):
            return None
        actor = tokens.actor(request.headers.get("Authorization"))
        if actor is None:
            return None
        wait = limiter.admit(f"token:{actor.name}")
        if wait <= 0:
            return None
        seconds = int(wait) + 1
        response = jsonify({"error": f"token {actor.name} sent more than {per_minute} requests within 60 s; try "
                                     f"again in {seconds} s (the limit is dashboard.api_limits.requests_per_minute)"})
        response.status_code = 429
        response.headers["Retry-After"] = str(seconds)
        response.headers["Cache-Control"] = "no-store"
        return response


def mount_api(server, settings: Any) -> list[str]:
    """Register the JSON APIs the settings ask for on ``server`` (the dashboard's Flask app).

    Parameters
    ----------
    server : flask.Flask
        ``app.server`` of :func:`dashboard.app.create_app` (after :func:`dashboard.auth.install_auth`).
    settings : dashboard.settings.DashboardSettings
        ``api_tokens`` (a tokens file) switches the APIs on; ``orders_db`` adds the work-order routes;
        ``api_limits`` (:class:`dashboard.api_limits.ApiLimits`) sets query sizes and requests per token
        (:func:`rate_limit`).

    Returns
    -------
    list of str
        Names of the blueprints mounted (empty without a tokens file).

    Raises
    ------
    core.errors.ConfigError
        For a tokens file that is missing, readable by others or malformed (the message names file and entry).
    """
    if not settings.api_tokens:
        return []
    from core.orders.api import read_api_tokens

    tokens = read_api_tokens(settings.api_tokens)
    token_prefix(server, API_PREFIX)
    mounted: list[str] = []
    from dashboard.api_limits import ApiLimits
    from dashboard.api_v1 import api_v1
    from dashboard.store import EXTENSION as STORE

    limits = getattr(settings, "api_limits", None) or ApiLimits()
    rate_limit(server, tokens, limits.requests_per_minute)
    # The read API first: its /findings (results store, per site, the orders API's row shape) wins, and answers
    # without a work-order database too.
    read_api = api_v1(lambda: server.extensions[STORE].get(), tokens, plant=settings.plant, tz=settings.tz,
                      limits=limits)
    server.register_blueprint(read_api)
    mounted.append(read_api.name)
    from dashboard.orders import EXTENSION, LazyService

    provider = server.extensions.get(EXTENSION)
    if provider is not None and provider.url is not None:
        from core.orders.api import findings_from_store, orders_api

        service: Any = LazyService(provider)  # opens the database on the first API call, per worker
        bp = orders_api(service, tokens, findings=findings_from_store(settings.store_url))
        _json_errors(bp)
        server.register_blueprint(bp)
        mounted.append(bp.name)
    # Other /api/v1 blueprints (token-authenticated the same way) are registered here, next to the orders API.
    return mounted


def _json_errors(bp) -> None:
    """A database or store that cannot be opened is a JSON 503 for API clients, not an HTML 500 (the blueprint's
    own handlers for bad input, 4xx, are more specific and win)."""
    from flask import jsonify

    from core.errors import WattlineError

    @bp.errorhandler(WattlineError)
    def _unavailable(exc):
        response = jsonify({"error": str(exc)})
        response.status_code = 503
        return response
