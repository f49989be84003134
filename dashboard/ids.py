"""Component ids of the whole app, in one place so that layouts, callbacks and browser tests agree."""

# -- shell -------------------------------------------------------------------------------------------------------------
NAV = "nav"
URL = "url"
STORE_LABEL = "store-label"

# -- live plant (/) ----------------------------------------------------------------------------------------------------
LIVE_INTERVAL = "live-interval"
LIVE_RANGE = "live-range"
LIVE_STATUS = "live-status"
LIVE_KPIS = "live-kpis"
LIVE_EMPTY = "live-empty"
LIVE_GRAPHS = "live-graphs"
LIVE_LINE_GRAPH = "live-line-graph"
LIVE_MACHINE_GRAPH = "live-machine-graph"

# KPI tile value elements (tests read them).
KPI_PLANT_POWER = "kpi-plant-power"
KPI_ENERGY_TODAY = "kpi-energy-today"
KPI_MACHINE_STATES = "kpi-machine-states"

# -- series (/series) --------------------------------------------------------------------------------------------------
SERIES_INTERVAL = "series-interval"
SERIES_SUMMARY = "series-summary"
SERIES_TABLE = "series-table"
SERIES_FILTER = "series-filter"
SERIES_EMPTY = "series-empty"
