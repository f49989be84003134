"""The Dash app shell: header, navigation and the page container.

:func:`create_app` builds a fresh app for a store URL. Pages live in ``dashboard/pages`` (one module each); nothing
reads data at import time: the store is opened on the first request that needs it (:mod:`dashboard.store`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output, dcc, html

from core.errors import WattlineError
from core.storage import Store
from dashboard import ids
from dashboard.access import current_user, install_callback_guard, may_open
from dashboard.auth import csrf_token, install_auth
from dashboard.data import resolve_timezone
from dashboard.errors import DashboardError
from dashboard.periods import DEFAULT_PERIOD, PERIODS
from dashboard.settings import CONFIG_KEY, DashboardSettings
from dashboard.store import EXTENSION, StoreProvider
from dashboard.users import ROLE_LABELS, UsersFile

HERE = Path(__file__).resolve().parent
PAGES_PACKAGE = "dashboard.pages."


def create_app(
    store_url: str,
    *,
    refresh_s: float = 2.0,
    stale_after_s: float = 300.0,
    tz: str | None = None,
    title: str = "Wattline",
    store: Store | None = None,
    users: UsersFile | str | Path | None = None,
    plant: Any = None,
    secure_cookies: bool = False,
    cache_dir: str | Path | None = None,
    orders_db: str | None = None,
    orders_rules: str | Path | None = None,
    api_tokens: str | Path | None = None,
    api_limits: Any = None,
) -> dash.Dash:
    """Build the dashboard for one store.

    Parameters
    ----------
    store_url : str
        Store to read: a SQLite path, ``sqlite:///path.db`` or ``influx://...`` (see :func:`core.storage.open_store`).
        Opened on first use, not here.
    refresh_s : float
        Live page refresh period [s].
    stale_after_s : float
        Age after which a series counts as stale [s].
    tz : str, optional
        IANA time zone of the plant for axes and "today"; default ``$TZ`` or the system zone, else UTC.
    title : str
        Browser tab title.
    store : Store, optional
        An open store to read instead of opening ``store_url`` (the caller keeps it open and closes it); ``store_url``
        is then only shown.
    users : UsersFile or path
        The users file (:mod:`dashboard.users`): every route needs a login; required.
    plant : core.plant.Plant or path, optional
        Plant description (sites, currencies, tariffs, CO2 factors, time zones).
    secure_cookies : bool
        Mark the session cookie ``Secure`` (serve over HTTPS then).
    cache_dir : path, optional
        Folder of the results cache shared by the workers (:mod:`dashboard.cache`); per process when omitted.
    orders_db : str, optional
        Work-order database URL (as ``wattline orders --db``); default ``$WATTLINE_ORDERS_DB``, else
        ``<store>.orders.db`` beside an embedded store once it exists (:mod:`dashboard.orders`).
    orders_rules : path, optional
        Orders settings YAML: its teams are what an order can be reassigned to (default ``$WATTLINE_ORDERS_RULES``).
    api_tokens : path, optional
        Tokens file of the JSON API: mounts ``/api/v1`` (:func:`dashboard.api_mount.mount_api`).
    api_limits : dashboard.api_limits.ApiLimits, optional
        Limits of ``/api/v1``: query sizes and requests per token per minute (default :class:`ApiLimits`' defaults).

    Returns
    -------
    dash.Dash
        The app; serve it with :func:`dashboard.serve.run_dashboard` or :class:`dashboard.serve.DashboardServer`.
        ``app.server`` is the Flask app (WSGI).

    Raises
    ------
    DashboardError
        When a setting is invalid (the message names it).
    """
    if not str(store_url or "").strip():
        raise DashboardError("the dashboard needs a store URL (a SQLite file path or influx://...); set --store")
    for name, value in (("refresh_s", refresh_s), ("stale_after_s", stale_after_s)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise DashboardError(f"dashboard setting {name} must be a positive number of seconds, got {value!r}")
    if users is None:
        raise DashboardError("the dashboard needs a users file (every page needs a login); create one with "
                             "'wattline users add NAME --role ROLE' and pass --users FILE")
    users = users if isinstance(users, UsersFile) else UsersFile(users)
    users.users()  # a broken or world-readable users file fails now, naming the file
    if plant is not None and not hasattr(plant, "sites"):
        from core.plant import read_plant

        plant = read_plant(plant)
    from dashboard.orders import resolve_orders_db, resolve_orders_rules

    orders_url, orders_explicit = resolve_orders_db(str(store_url), orders_db)
    settings = DashboardSettings(str(store_url), float(refresh_s), float(stale_after_s), resolve_timezone(tz), plant,
                                 orders_db=orders_url, orders_db_explicit=orders_explicit,
                                 orders_rules=resolve_orders_rules(orders_rules),
                                 api_tokens=None if api_tokens is None else str(api_tokens), api_limits=api_limits)
    if settings.orders_rules:
        from core.orders.config import read_orders_config

        read_orders_config(Path(settings.orders_rules))  # a bad rules file fails now, naming file and key

    app = dash.Dash(
        "dashboard",
        use_pages=True,
        pages_folder=str(HERE / "pages"),
        assets_folder=str(HERE / "assets"),
        title=title,
        # no "Updating..." flicker in the tab every refresh; Dash documents None for that but annotates str
        update_title=None,  # type: ignore[arg-type]
        serve_locally=True,  # plant networks are often offline: no CDN
        enable_mcp=False,  # Dash's MCP endpoint would expose the callbacks to tools outside the login gate
        suppress_callback_exceptions=True,  # page components exist only while their page is shown
    )
    from dashboard.auth import LoginLimiter
    from dashboard.cache import EXTENSION as CACHE_EXTENSION
    from dashboard.cache import ResultCache

    cache = ResultCache(cache_dir)  # checks the shared folder (0700, this user's) before anything is kept there
    # Failed logins counted in the shared folder: every gunicorn worker enforces one limit, not one each.
    install_auth(app, users, secure_cookies=secure_cookies,
                 limiter=None if cache.path is None else LoginLimiter(path=cache.path.parent / "logins.sqlite"))
    install_callback_guard(app)  # before any callback is registered: every one is wrapped
    app.server.config[CONFIG_KEY] = settings
    app.server.extensions[CACHE_EXTENSION] = cache
    app.server.extensions[EXTENSION] = StoreProvider(settings.store_url, shared=store)
    from dashboard.api_mount import mount_api
    from dashboard.orders import EXTENSION as ORDERS_EXTENSION
    from dashboard.orders import OrdersProvider

    app.server.extensions[ORDERS_EXTENSION] = OrdersProvider(settings.orders_db, settings.orders_rules,
                                                             settings.orders_db_explicit)
    mount_api(app.server, settings)
    from dashboard.figures import use_template

    use_template()  # figures take the template without validating it again on every refresh
    app.layout = shell_layout
    _register_shell_callbacks(app)
    for module in _page_modules():
        module.register_callbacks(app)
    from dashboard.exports import install_exports

    install_exports(app)
    _set_up_before_serving(app)
    return app


def _set_up_before_serving(app: dash.Dash) -> None:
    """Run Dash's first-request setup now, in this one thread, before any server thread exists.

    Dash finishes building an app in ``before_request`` hooks (merging the callbacks, adding the pages router), each of
    which marks itself done *before* it works. When a fresh gunicorn worker's threads take their first requests at
    once, one thread iterates the callback map while another adds the router to it (seen at load 20: ``RuntimeError:
    dictionary changed size during iteration`` in ``validate_background_callbacks``), or serves a request before the
    router exists. Running Dash's own hooks once here (found in Flask's public ``before_request_funcs`` by their
    module) leaves nothing for the first requests to race on; the login gate's hook is not called, it has nothing to
    set up. ``test_dash_first_request_setup_is_done_before_any_request`` fails if a Dash upgrade moves the setup.
    """
    hooks = [f for f in app.server.before_request_funcs.get(None, ())
             if getattr(f, "__module__", "").split(".")[0] == "dash"]
    with app.server.test_request_context("/"):
        for hook in hooks:
            hook()


def _page_modules() -> list:
    """Modules of this package's pages, as Dash imported them for the app just built."""
    modules = []
    for page in dash.page_registry.values():
        name = page["module"]
        if name.startswith(PAGES_PACKAGE) and name in sys.modules:
            modules.append(sys.modules[name])
    return modules


def store_of(app: dash.Dash) -> Store:
    """The app's store, opened on first use (raises StoreError when it cannot be opened)."""
    return app.server.extensions[EXTENSION].get()


def user_store(app: dash.Dash, site: str | None = None):
    """The app's store as the logged-in user may see it, limited to ``site`` when one is chosen.

    Raises
    ------
    dashboard.access.AccessDenied
        Without a user, or for a site the user may not see (the callback guard answers 204 then).
    """
    from dashboard.access import SiteScopedStore, require_user, scoped_store, sites_for

    user = require_user()
    store = store_of(app)
    if site in (None, "", "all"):
        return scoped_store(store, user)
    return SiteScopedStore(store, sites_for(user, site, [site]))


def close_store(app: dash.Dash) -> None:
    """Close the app's store if it was opened (the server does this when it stops)."""
    provider = app.server.extensions.get(EXTENSION)
    if provider is not None:
        provider.close()
    from dashboard.orders import orders_provider

    orders = orders_provider(app.server)
    if orders is not None:
        orders.close()


def _nav_links(pathname: str | None) -> list:
    links = []
    user = current_user()
    for page in sorted(dash.page_registry.values(), key=lambda p: p.get("order") or 0):
        if not page["module"].startswith(PAGES_PACKAGE) or page.get("nav") is False:
            continue
        if not may_open(user, page["module"]):
            continue
        active = (pathname or "/") == page["relative_path"]
        links.append(dcc.Link(page["name"], href=page["relative_path"], className="nav-link" + (" active" if active else "")))
    return links


def shell_layout() -> html.Div:
    """Header with navigation, then the current page."""
    return html.Div(
        [
            dcc.Location(id=ids.URL),
            html.Header(
                [
                    html.Div([html.Span("⚡", className="brand-mark"), html.Span("Wattline", className="brand-name")],
                             className="brand"),
                    html.Nav(_nav_links(None), id=ids.NAV, className="nav"),
                    html.Div(className="header-spacer"),
                    html.Div(id=ids.STORE_LABEL, className="store-label"),
                    _user_box(),
                ],
                className="header",
            ),
            html.Div(
                [
                    html.Span("Site", className="selector-label"),
                    # Not persisted: its options depend on the user, and a remembered value could fight the callback.
                    dcc.Dropdown(id=ids.SITE, options=[], value="all", clearable=False, searchable=False,
                                 className="selector"),
                    html.Span("Period", className="selector-label"),
                    dcc.Dropdown(id=ids.PERIOD, options=[{"label": p.label, "value": p.key} for p in PERIODS],
                                 value=DEFAULT_PERIOD, clearable=False, searchable=False, persistence=True,
                                 persistence_type="session", className="selector"),
                ],
                id=ids.SELECTORS,
                className="selectors",
            ),
            html.Main(dash.page_container, className="main"),
        ],
        className="shell",
    )


def _user_box() -> html.Div:
    """Who is logged in, and the logout button (a POST form with the session's token)."""
    user = current_user()
    if user is None:
        return html.Div(id=ids.USER_BOX)
    scope = "all sites" if user.all_sites else ", ".join(user.sites)
    return html.Div(
        [
            html.Span([html.B(user.name), f" · {ROLE_LABELS[user.role]} · {scope}"], className="user-name"),
            html.Form(
                [dcc.Input(type="hidden", name="csrf", value=csrf_token()),
                 html.Button("Log out", id=ids.LOGOUT, type="submit", className="logout")],
                method="POST", action="/logout", className="logout-form",
            ),
        ],
        id=ids.USER_BOX,
        className="user-box",
    )


def _register_shell_callbacks(app: dash.Dash) -> None:
    from dashboard.access import require_user, scoped_store
    from dashboard.overview import known_sites, site_options

    @app.callback(Output(ids.NAV, "children"), Output(ids.STORE_LABEL, "children"), Input(ids.URL, "pathname"))
    def highlight(pathname):
        settings = app.server.config[CONFIG_KEY]
        user = current_user()
        # Where the data live matters to engineers and admins; to a plant manager it is noise.
        label = f"store: {_safe_url(settings.store_url)}" if user and user.role in ("engineer", "admin") else ""
        return _nav_links(pathname), label

    @app.callback(Output(ids.SITE, "options"), Output(ids.SITE, "value"), Input(ids.URL, "pathname"),
                  dash.State(ids.SITE, "value"))
    def sites(_pathname, current):
        user = require_user()
        settings = app.server.config[CONFIG_KEY]
        try:
            known = known_sites(scoped_store(store_of(app), user), settings.plant)
        except WattlineError:
            known = []
        options = site_options(user, known, settings.plant)
        values = [o["value"] for o in options]
        return options, current if current in values else values[0]


def _safe_url(url: str) -> str:
    """Store URL without query string (an InfluxDB URL may carry a token there)."""
    return url.split("?", 1)[0]
