"""``wattline analyze --cluster``: the per-machine fits and scoring fan out over a real Dask scheduler with two worker
processes (``distributed.LocalCluster``) and the report equals the single-process run; a failing item is named."""

from __future__ import annotations

import json
import math
import operator
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
#: Keys that differ between two runs by design (clock, run id).
VOLATILE = {"generated", "run", "stored_run"}

pytestmark = [pytest.mark.integration]


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=ROOT)


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    """Ten days at 15 min of a plant with machines at both sites of the default plant (north and south), so the
    fan-out partitions by site."""
    root = tmp_path_factory.mktemp("cluster")
    src = yaml.safe_load((ROOT / "simulator" / "plants" / "default.yaml").read_text())
    for site in src["sites"]:
        kept = 0
        for line in site["lines"]:
            line["machines"] = line["machines"][: max(0, 3 - kept)]
            kept += len(line["machines"])
        site["lines"] = [line for line in site["lines"] if line["machines"]]
    plant = root / "plant.yaml"
    plant.write_text(yaml.safe_dump(src, sort_keys=False))
    db = root / "plant.db"
    result = run("simulate", "backfill", "--days", "10", "--plant", str(plant), "--resolution", "900", "--seed", "3",
                 "--start", "2026-03-02", "--store", str(db), "--truth", str(root / "truth.json"), "--quiet")
    assert result.returncode == 0, result.stderr
    return db, plant


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            Client(lc, set_as_default=False) as client:
        yield lc.scheduler_address, client


def _executed(client) -> dict[str, int]:
    return client.run(lambda dask_worker: dask_worker.state.executed_count)


def assert_same(a, b, path="report"):
    """Same structure and values; floats to a relative 1e-9 (the fan-out must not change a result)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) - VOLATILE == set(b) - VOLATILE, f"{path}: keys differ"
        for k in set(a) - VOLATILE:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {len(a)} items vs {len(b) if isinstance(b, list) else b}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def test_report_on_a_dask_cluster_equals_the_single_process_run(two_sites, cluster, tmp_path):
    db, plant = two_sites
    address, client = cluster
    reports = {}
    before = sum(_executed(client).values())
    for mode, opts in (("single", ["--jobs", "1"]), ("dask", ["--cluster", address])):
        store = tmp_path / f"{mode}.db"
        shutil.copy(db, store)  # each run stores its findings in its own copy
        out = tmp_path / f"{mode}.json"
        result = run("analyze", "--store", str(store), "--plant", str(plant), "--json", str(out), "--quiet", *opts)
        assert result.returncode == 0, result.stderr
        reports[mode] = json.loads(out.read_text())
    per_worker = _executed(client)
    # The work went to the cluster: both workers ran batches (a batch holds one site's baselines or machines).
    assert sum(per_worker.values()) - before >= 4, per_worker
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
    single, dask = reports["single"], reports["dask"]
    # Something to compare: both sites' machines, baselines of every scope, findings and anomalies.
    assert {e["machine"].split("/")[0] for e in single["events"]} == {"north", "south"}
    assert {b["scope"].split(":")[0] for b in single["baselines"]} == {"machine", "line", "site"}
    assert single["events"] and single["baselines"]
    assert_same(single, dask)
    assert dask["plant_energy_kwh"] == pytest.approx(single["plant_energy_kwh"], rel=1e-12)
    assert dask["potential"]["total_kwh"] == pytest.approx(single["potential"]["total_kwh"], rel=1e-12)


def test_a_failing_item_is_named_with_its_worker(cluster):
    from analytics.parallel import Fanout, ParallelSettings, WorkerError

    address, _ = cluster
    with Fanout(ParallelSettings(cluster=address)) as fan:
        assert fan.mode == "dask" and fan.workers == 2
        # operator.truediv(item, shared): the string item fails in the worker, the others succeed.
        got = fan.map(operator.truediv, [1.0, 2.0, 4.0], ["north/l1/a", "north/l1/b", "south/l1/c"],
                      ["north", "north", "south"], "test", shared=2.0)
        assert got == [0.5, 1.0, 2.0]
        with pytest.raises(WorkerError) as err:
            fan.map(operator.truediv, [1.0, "x", 4.0], ["north/l1/a", "north/l1/b", "south/l1/c"],
                    ["north", "north", "south"], "anomaly detector", shared=2.0)
    text = str(err.value)
    assert "anomaly detector of north/l1/b failed on" in text and "TypeError" in text
    assert "north/l1/a" not in text.splitlines()[0]


def test_unreachable_scheduler_is_a_clear_error(two_sites):
    db, plant = two_sites
    # The CLI with the connect timeout shortened to 3 s (the product waits 30 s for a scheduler that may be starting).
    code = ("import sys; import analytics.parallel as p; p.CONNECT_TIMEOUT_S = 3.0; sys.argv[0] = 'wattline'; "
            "from wattline.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code, "analyze", "--store", str(db), "--plant", str(plant), "--quiet",
                             "--cluster", "tcp://127.0.0.1:9"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode != 0
    assert "cannot reach the Dask scheduler tcp://127.0.0.1:9 within 3 s" in result.stderr + result.stdout
    bad = run("analyze", "--store", str(db), "--quiet", "--cluster", "127.0.0.1")
    assert bad.returncode == 2 and "not a Dask scheduler address" in bad.stderr + bad.stdout


def test_a_scheduler_without_workers_is_a_clear_error(monkeypatch):
    from distributed import LocalCluster

    import analytics.parallel as parallel

    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT_S", 3.0)
    with LocalCluster(n_workers=0, processes=True, dashboard_address=None) as lc, \
            pytest.raises(parallel.AnalyticsError, match="has no worker") as err, \
            parallel.Fanout(parallel.ParallelSettings(cluster=lc.scheduler_address)):
        pass
    assert f"dask worker {lc.scheduler_address}" in str(err.value)
