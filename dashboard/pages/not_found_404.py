"""The page for an unknown address (Dash shows the module called ``not_found_404``)."""

from __future__ import annotations

import dash
from dash import dcc, html

from dashboard.components import empty_state

dash.register_page(__name__, path="/404", name="Not found", title="Wattline · Page not found", nav=False, order=99)


def layout(**_kwargs) -> html.Div:
    return html.Div(
        [empty_state("Page not found", "There is no page at this address."),
         html.P(dcc.Link("Back to the live plant", href="/"), className="center")],
        id="page-not-found", className="page",
    )


def register_callbacks(app: dash.Dash) -> None:
    """No callbacks."""
