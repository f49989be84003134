"""Role and site checks inside every callback and export.

:func:`install_callback_guard` replaces ``app.callback`` of one app by a version that wraps every callback function
in :func:`guard` before Dash registers it, so no callback can forget the check: the pages' callbacks and Dash's own
page-routing callback (which Dash registers through ``app.callback`` on the first request) alike. A test walks
``app.callback_map`` and proves each one is wrapped.

:func:`guard` refuses to run a callback without a logged-in user (the server gate already answered 401 then) or for a
role the callback does not allow (:func:`allow`); a callback that asks for a site the user may not see raises
:class:`AccessDenied`, and the guard turns both into ``PreventUpdate``: Dash answers 204 with no body.

Data functions never see more than the user may: :func:`scoped_store` returns the store seen through the user's sites
(:class:`SiteScopedStore`), and :func:`sites_for` resolves a requested site against the user's.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dashboard.users import ROLES, User

#: Pages a role may open (module name of the page -> roles); pages not listed are open to every role.
PAGE_ROLES = {
    "dashboard.pages.series": ("engineer", "cdo", "admin"),
    "dashboard.pages.collectors": ("engineer", "cdo", "admin"),
    "dashboard.pages.enterprise": ("cdo", "admin"),
}
#: A site id no site can have (site ids are letters, digits, _ . -): a filter on it matches nothing.
NO_SITE = "~no-site~"


class AccessDenied(Exception):
    """The user may not see what the request asks for."""


def current_user() -> User | None:
    """The logged-in user of the current request (set by the server gate), or None outside a request."""
    from flask import g, has_request_context

    return g.get("wattline_user") if has_request_context() else None


def require_user(roles: Sequence[str] | None = None) -> User:
    """The logged-in user; AccessDenied when there is none or the role is not in ``roles``."""
    user = current_user()
    if user is None:
        raise AccessDenied("not logged in")
    if roles is not None and user.role not in roles:
        raise AccessDenied(f"role {user.role} may not do this")
    return user


def may_open(user: User | None, page_module: str) -> bool:
    """True when ``user`` may open the page of module ``page_module``."""
    if user is None:
        return False
    return user.role in PAGE_ROLES.get(page_module, ROLES)


def allow(*roles: str) -> Callable:
    """Mark a callback function as open to ``roles`` only (checked by :func:`guard`)."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown roles {unknown}; valid: {ROLES}")

    def mark(func):
        func._wattline_roles = tuple(roles)
        return func

    return mark


def guard(func: Callable) -> Callable:
    """Wrap a callback function: no user or a refused role or site -> ``PreventUpdate`` (204, no data)."""
    from dash.exceptions import PreventUpdate

    roles = getattr(func, "_wattline_roles", None)

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            try:
                require_user(roles)
                return await func(*args, **kwargs)
            except AccessDenied:
                raise PreventUpdate from None
    else:
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                require_user(roles)
                return func(*args, **kwargs)
            except AccessDenied:
                raise PreventUpdate from None

    wrapper.__dict__["_wattline_guarded"] = True  # what is_guarded looks for
    return wrapper


def is_guarded(func: Callable) -> bool:
    """True when ``func`` or a function it wraps went through :func:`guard` (for the test over ``callback_map``)."""
    seen = 0
    current: Callable | None = func
    while current is not None and seen < 20:
        if current.__dict__.get("_wattline_guarded") if hasattr(current, "__dict__") else False:
            return True
        current = getattr(current, "__wrapped__", None)
        seen += 1
    return False


def install_callback_guard(app) -> None:
    """Make ``app.callback`` wrap every function it registers in :func:`guard`."""
    original = app.callback

    @functools.wraps(original)
    def callback(*args, **kwargs):
        register = original(*args, **kwargs)

        def decorate(func):
            return register(guard(func))

        return decorate

    app.callback = callback


# -- sites ---------------------------------------------------------------------------------------------------------------
def sites_for(user: User, requested: str | None, known: Iterable[str]) -> list[str]:
    """Sites a request covers: all the user may see (``requested`` empty or ``"all"``) or the one requested.

    Raises
    ------
    AccessDenied
        When ``requested`` is a site the user may not see.
    """
    known = sorted(set(known))
    if requested in (None, "", "all"):
        return [s for s in known if user.may_see(s)] if user.all_sites else sorted(user.sites)
    if not user.may_see(requested):
        raise AccessDenied(f"user {user.name} may not see site {requested!r}")
    return [requested]


def machine_site(path: str) -> str | None:
    """Site of a machine path ``site/line/machine`` (None for a bare machine tag)."""
    parts = str(path).split("/")
    return parts[0] if len(parts) == 3 else None


def scoped_store(store, user: User):
    """``store`` as ``user`` may see it: unchanged for the roles that see every site, else a :class:`SiteScopedStore`."""
    return store if user.all_sites else SiteScopedStore(store, user.sites)


class SiteScopedStore:
    """Read-only view of a store limited to some sites: every read gets a ``site`` tag filter, series lists are
    filtered, series without a site tag are hidden.

    Parameters
    ----------
    store : core.storage.Store
        The store.
    sites : sequence of str
        Sites visible through this view.
    """

    def __init__(self, store, sites: Sequence[str]) -> None:
        self._store = store
        self.sites = tuple(sorted(set(sites)))
        self.description = getattr(store, "description", "")

    def _tags(self, tags: Any) -> dict:
        tags = dict(tags or {})
        wanted = tags.get("site")
        if wanted is None:
            allowed = list(self.sites)
        else:
            asked = [wanted] if isinstance(wanted, str) else list(wanted)
            allowed = [s for s in asked if s in self.sites]
        tags["site"] = allowed or [NO_SITE]
        return tags

    def query(self, measurement, field, start, stop, tags=None, window_s=None, agg="mean", pivot=None):
        return self._store.query(measurement, field, start, stop, tags=self._tags(tags), window_s=window_s, agg=agg,
                                 pivot=pivot)

    def last_values(self, measurement, field, tags=None):
        return self._store.last_values(measurement, field, tags=self._tags(tags))

    def aggregate(self, measurement, field, start, stop, **kwargs):
        kwargs["tags"] = self._tags(kwargs.get("tags"))
        return self._store.aggregate(measurement, field, start, stop, **kwargs)

    def read_frame(self, columns, start, stop, **kwargs):
        kwargs["tags"] = self._tags(kwargs.get("tags"))
        return self._store.read_frame(columns, start, stop, **kwargs)

    def series(self, measurement=None):
        return [info for info in self._store.series(measurement) if info.key.tag_dict.get("site") in self.sites]
