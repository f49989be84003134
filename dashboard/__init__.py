"""Wattline's web app (Plotly Dash).

Build the app with :func:`dashboard.app.create_app` and serve it with :func:`dashboard.serve.run_dashboard` or
:class:`dashboard.serve.DashboardServer`. Importing this package is cheap: Dash is imported only by those modules.
"""

from dashboard.errors import DashboardError, PortInUseError

__all__ = ["DashboardError", "PortInUseError"]
