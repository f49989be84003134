"""The Dash app shell: header, navigation and the page container.

:func:`create_app` builds a fresh app for a store URL. Pages live in ``dashboard/pages`` (one module each); nothing
reads data at import time: the store is opened on the first request that needs it (:mod:`dashboard.store`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import dash
from dash import Input, Output, dcc, html

from core.storage import Store
from dashboard import ids
from dashboard.data import resolve_timezone
from dashboard.errors import DashboardError
from dashboard.settings import CONFIG_KEY, DashboardSettings
from dashboard.store import EXTENSION, StoreProvider

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
    settings = DashboardSettings(str(store_url), float(refresh_s), float(stale_after_s), resolve_timezone(tz))

    app = dash.Dash(
        "dashboard",
        use_pages=True,
        pages_folder=str(HERE / "pages"),
        assets_folder=str(HERE / "assets"),
        title=title,
        update_title=None,  # no "Updating..." flicker in the tab every refresh
        serve_locally=True,  # plant networks are often offline: no CDN
    )
    app.server.config[CONFIG_KEY] = settings
    app.server.extensions[EXTENSION] = StoreProvider(settings.store_url, shared=store)
    app.layout = shell_layout
    _register_shell_callbacks(app)
    for module in _page_modules():
        module.register_callbacks(app)
    return app


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


def close_store(app: dash.Dash) -> None:
    """Close the app's store if it was opened (the server does this when it stops)."""
    provider = app.server.extensions.get(EXTENSION)
    if provider is not None:
        provider.close()


def _nav_links(pathname: str | None) -> list:
    links = []
    for page in sorted(dash.page_registry.values(), key=lambda p: p.get("order") or 0):
        if not page["module"].startswith(PAGES_PACKAGE):
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
                ],
                className="header",
            ),
            html.Main(dash.page_container, className="main"),
        ],
        className="shell",
    )


def _register_shell_callbacks(app: dash.Dash) -> None:
    @app.callback(Output(ids.NAV, "children"), Output(ids.STORE_LABEL, "children"), Input(ids.URL, "pathname"))
    def highlight(pathname):
        settings = app.server.config[CONFIG_KEY]
        return _nav_links(pathname), f"store: {_safe_url(settings.store_url)}"


def _safe_url(url: str) -> str:
    """Store URL without query string (an InfluxDB URL may carry a token there)."""
    return url.split("?", 1)[0]
