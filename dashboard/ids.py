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

# -- shell: user, shared selectors ----------------------------------------------------------------------------------------
USER_BOX = "user-box"
LOGOUT = "logout"
SELECTORS = "selectors"
SITE = "site-select"
PERIOD = "period-select"

# -- plant overview (/overview) ---------------------------------------------------------------------------------------------
OV_STATUS = "ov-status"
OV_KPIS = "ov-kpis"
OV_POTENTIAL = "ov-potential"
OV_PARETO = "ov-pareto"
OV_TOP_MACHINES = "ov-top-machines"
OV_HEATMAP = "ov-heatmap"
OV_SANKEY = "ov-sankey"
OV_LATEST = "ov-latest"
# KPI values (tests read them)
KPI_POTENTIAL_KWH = "kpi-potential-kwh"
KPI_POTENTIAL_PCT = "kpi-potential-pct"
KPI_POTENTIAL_MONEY = "kpi-potential-money"

# -- findings (/findings) -------------------------------------------------------------------------------------------------
FINDINGS_GRID = "findings-grid"
FINDINGS_STATUS = "findings-status"
FINDINGS_KIND = "findings-kind"
FINDINGS_EXPORT = "findings-export"
FINDINGS_EXPORT_PARQUET = "findings-export-parquet"
# work orders on the findings page: closure KPIs, the selected finding's order and the status change form
FINDINGS_LOOP = "findings-loop"
FINDINGS_ORDER = "findings-order"
FINDINGS_ORDER_INFO = "findings-order-info"
FINDINGS_ORDER_ID = "findings-order-id"
FINDINGS_ACTION = "findings-action"
FINDINGS_TEAM = "findings-team"
FINDINGS_REASON = "findings-reason"
FINDINGS_COMMENT = "findings-comment"
FINDINGS_APPLY = "findings-apply"
FINDINGS_ACTION_MSG = "findings-action-msg"
FINDINGS_CHANGED = "findings-changed"
# anomaly preferences on the findings page: mark the selected anomaly as normal / undo, a machine's false-alarm budget
ANOMALY_INFO = "anomaly-info"
ANOMALY_NOTE = "anomaly-note"
ANOMALY_MARK = "anomaly-mark"
ANOMALY_UNDO = "anomaly-undo"
ANOMALY_MARKED = "anomaly-marked"
ANOMALY_MACHINE = "anomaly-machine"
ANOMALY_BUDGET = "anomaly-budget"
ANOMALY_BUDGET_SET = "anomaly-budget-set"
ANOMALY_MSG = "anomaly-msg"
ANOMALY_CHANGED = "anomaly-changed"

# -- machine (/machine/<site>/<line>/<machine>) -----------------------------------------------------------------------------
MACHINE_TITLE = "machine-title"
MACHINE_GRAPH = "machine-graph"
MACHINE_STATES = "machine-states"
MACHINE_FINDINGS = "machine-findings"
MACHINE_PATH = "machine-path"
MACHINE_ORDERS = "machine-orders"
MACHINE_UNIT = "machine-unit"

# -- collectors (/collectors) ------------------------------------------------------------------------------------------------
COL_INTERVAL = "col-interval"
COL_SUMMARY = "col-summary"
COL_TABLE = "col-table"
COL_QUALITY = "col-quality"
COL_QUALITY_GRID = "col-quality-grid"
COL_QUALITY_EMPTY = "col-quality-empty"
COL_EXPORT = "col-export"
COL_QUALITY_EXPORT = "col-quality-export"
COL_EXPORT_PARQUET = "col-export-parquet"
COL_QUALITY_EXPORT_PARQUET = "col-quality-export-parquet"

# -- materials (/materials) ---------------------------------------------------------------------------------------------------
MAT_STATUS = "mat-status"
MAT_GRID = "mat-grid"
MAT_SEARCH = "mat-search"
MAT_TOP = "mat-top"
MAT_TAIL = "mat-tail"
MAT_EXPORT = "mat-export"
MAT_EXPORT_PARQUET = "mat-export-parquet"

# -- enterprise KPIs (/enterprise) ----------------------------------------------------------------------------------------------
ENT_STATUS = "ent-status"
ENT_TABLE = "ent-table"
ENT_TREND = "ent-trend"
ENT_MONTH = "ent-month"
ENT_PDF = "ent-pdf"
ENT_EXPORT = "ent-export"
ENT_EXPORT_PARQUET = "ent-export-parquet"
ENT_ORDERS = "ent-orders"
