"""What a page's callback or an export needs for one request: the user, the sites chosen, the period, the findings.

Every callback and export of the overview, findings and machine pages starts with :func:`view_context`, which checks
the user's role and sites (:mod:`dashboard.access`) before anything is read.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass

from dashboard.access import SiteScopedStore, require_user, scoped_store, sites_for
from dashboard.overview import SiteInfo, known_sites, latest_run_findings, site_info, visible
from dashboard.periods import Period, day_range, get_period
from dashboard.settings import current_settings
from dashboard.users import User


@dataclass
class ViewContext:
    """One request's view: ``store`` is limited to ``sites``; ``findings`` to what the user may see there."""

    user: User
    store: SiteScopedStore
    sites: list[SiteInfo]
    period: Period
    start_ns: int
    stop_ns: int
    findings: list
    plant: object

    def cache_key(self, what: str, now_ns: int) -> str:
        """Key of a cached result for this view: sites, period, the local day, and the findings it shows (so a new
        analysis run is shown at once)."""
        import hashlib

        digest = hashlib.sha256(repr([(e.machine, e.kind, e.start.isoformat(), e.end.isoformat(), e.excess_kwh)
                                       for e in self.findings]).encode()).hexdigest()[:16]
        tz = zoneinfo.ZoneInfo(self.sites[0].tz) if self.sites else None
        today = day_range(1, now_ns, tz)[0] if tz else 0
        sites = ",".join(s.id for s in self.sites)
        return f"{what}|{sites}|{self.start_ns}|{self.stop_ns}|{today}|{digest}"


def view_context(raw_store, site: str | None, period_key: str | None, now_ns: int) -> ViewContext:
    """Resolve the request's user, sites and period (AccessDenied for a site the user may not see)."""
    user = require_user()
    settings = current_settings()
    known = known_sites(scoped_store(raw_store, user), settings.plant)
    chosen = sites_for(user, site, known)
    infos = [site_info(s, settings.plant, settings.tz) for s in chosen]
    period = get_period(period_key)
    tz = zoneinfo.ZoneInfo(infos[0].tz) if infos else settings.tz
    start, stop = day_range(period.days, now_ns, tz)
    findings = visible(latest_run_findings(raw_store, start, stop), user, chosen)
    return ViewContext(user, SiteScopedStore(raw_store, chosen), infos, period, start, stop, findings, settings.plant)
