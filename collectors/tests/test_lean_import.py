"""`wattline collect` loads only what collecting needs: the CLI and the collector do not import pandas or pyarrow.

Why: every module loaded stays in the collector's memory for months; pandas and pyarrow (pulled in through the
``analytics`` package by the CLI's settings) cost ~95 MB RSS, more than the collector needs for its values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Heavy libraries the collector process must not load (queries that build frames import pandas when they run).
HEAVY = ("pandas", "pyarrow", "analytics.baseline")


def test_collect_command_imports_no_pandas_or_pyarrow():
    code = ("import json, sys; import wattline.cli, collectors.opcua.collector, core.storage.sqlite, "
            "core.storage.influx, core.storage.process; "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
