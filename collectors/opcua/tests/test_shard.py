"""Sharding one plant-wide collector file over several processes, and refusing configs that overlap."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from collectors.opcua.config import read_collector_config
from collectors.opcua.shard import find_overlaps, shard_of
from core.errors import ConfigError


def plant_file(tmp_path, servers: int = 12, extra: str = "", pins: dict[int, int] | None = None,
               store: str = "influx://127.0.0.1:8086?org=o&bucket=b&token_file=/t") -> object:
    lines = ["name: plant", f"store: {store}", "status_file: status.json", "metrics: {listen: '127.0.0.1:9108'}",
             extra, "servers:"]
    for i in range(servers):
        lines += [f"  - name: press-{i:02d}", f"    endpoint: opc.tcp://10.0.0.{i + 1}:4840"]
        if pins and i in pins:
            lines.append(f"    shard: {pins[i]}")
        lines += ["    groups:", "      - name: g", "        nodes:", "          - node_id: ns=2;s=Power"]
    path = tmp_path / "plant.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("count", [2, 3, 5])
def test_shards_partition_the_servers(tmp_path, count):
    path = plant_file(tmp_path)
    everyone = [s.name for s in read_collector_config(path).servers]
    owned = []
    for index in range(count):
        try:
            cfg = read_collector_config(path, {"shard": f"{index}/{count}"})
        except ConfigError as exc:  # a shard may own nothing with few servers; the message says so
            assert "owns none of the servers" in str(exc)
            continue
        assert cfg.name == f"plant-shard{index}"
        assert all(shard_of(s.name, count) == index for s in cfg.servers)
        owned += [s.name for s in cfg.servers]
    assert sorted(owned) == sorted(everyone)  # each server once: none twice, none missed


def test_shard_gets_its_own_spool_status_port_and_store_spool(tmp_path):
    path = plant_file(tmp_path, pins={0: 1, 1: 0})
    a = read_collector_config(path, {"shard": "0/2"})
    b = read_collector_config(path, {"shard": {"index": 1, "count": 2}})
    assert "press-01" in {s.name for s in a.servers} and "press-00" in {s.name for s in b.servers}
    assert a.spool.path != b.spool.path and a.spool.path.endswith("wattline-spool-shard0")
    assert a.status_file.endswith("status-shard0.json") and b.status_file.endswith("status-shard1.json")
    assert (a.metrics.listen, b.metrics.listen) == ("127.0.0.1:9108", "127.0.0.1:9109")
    assert "spool_dir=" in a.store and a.store != b.store
    assert a.store.startswith("influx://127.0.0.1:8086?org=o&bucket=b&token_file=/t&spool_dir=")
    unsharded = read_collector_config(path)
    assert len(unsharded.servers) == 12 and unsharded.name == "plant" and "spool_dir" not in unsharded.store


def test_shard_from_the_file_and_bad_values(tmp_path):
    path = plant_file(tmp_path, extra="shard: {index: 1, count: 2}")
    assert read_collector_config(path).name == "plant-shard1"
    with pytest.raises(ConfigError, match="index runs from 0 to 1"):
        read_collector_config(path, {"shard": "2/2"})
    with pytest.raises(ConfigError, match="write INDEX/COUNT"):
        read_collector_config(path, {"shard": "half"})
    with pytest.raises(ConfigError, match=r"servers\[press-03\].shard is 4 but shard.count is 2"):
        read_collector_config(plant_file(tmp_path, pins={3: 4}), {"shard": "0/2"})


def test_shard_owning_no_server_is_refused(tmp_path):
    path = plant_file(tmp_path, servers=2, pins={0: 0, 1: 0})
    with pytest.raises(ConfigError, match="shard 1/2 owns none of the servers"):
        read_collector_config(path, {"shard": "1/2"})


def test_overlapping_configs_are_refused_only_for_the_same_store(tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a = read_collector_config(plant_file(a_dir, servers=3))
    b = read_collector_config(plant_file(b_dir, servers=5))
    problems = find_overlaps({"a.yaml": a, "b.yaml": b})
    assert len(problems) == 1 and "3 node(s)" in problems[0] and "ns=2;s=Power at opc.tcp://10.0.0.1:4840" in problems[0]
    other = read_collector_config(plant_file(b_dir, servers=5, store="influx://127.0.0.1:8086?org=o&bucket=other"))
    assert find_overlaps({"a.yaml": a, "b.yaml": other}) == []
    s0 = read_collector_config(plant_file(a_dir, pins={i: i % 2 for i in range(12)}), {"shard": "0/2"})
    s1 = read_collector_config(plant_file(a_dir, pins={i: i % 2 for i in range(12)}), {"shard": "1/2"})
    assert find_overlaps({"0": s0, "1": s1}) == []


def test_check_refuses_overlapping_configs_before_connecting(tmp_path):
    from wattline.cli import app

    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    result = CliRunner().invoke(app, ["check", "--config", str(plant_file(a_dir, servers=2)),
                                      "--config", str(plant_file(b_dir, servers=2))])
    assert result.exit_code != 0
    text = result.output + str(result.exception or "")
    assert "both collect 2 node(s) into the same store" in text, text


def test_serve_runs_shards_of_one_file_and_refuses_unsharded_sharing(tmp_path):
    from wattline.cli_serve import build_services
    from wattline.serve_config import check_wattline_args, read_serve_config

    plant = plant_file(tmp_path)
    serve = tmp_path / "serve.yaml"
    serve.write_text(f"store: w.db\ndashboard: {{enabled: false}}\nanalytics: {{enabled: false}}\ncollectors:\n"
                     f"  - {{name: p0, config: {plant}, shard: 0/2}}\n  - {{name: p1, config: {plant}, shard: 1/2}}\n")
    services = {s.name: s for s in build_services(read_serve_config(serve, check_files=False))}
    assert services["collector-p1"].args[-2:] == ["--shard", "1/2"]
    assert all(check_wattline_args(s.args) is None for s in services.values())
    for shards in (("0/2", None), ("0/2", "0/2"), ("0/2", "1/3")):
        entries = "".join(f"  - {{name: p{i}, config: {plant}{', shard: ' + s if s else ''}}}\n"
                          for i, s in enumerate(shards))
        serve.write_text(f"store: w.db\ndashboard: {{enabled: false}}\ncollectors:\n{entries}")
        with pytest.raises(ConfigError, match=r"collectors p0, p1 all run .*plant\.yaml: give each its own shard"):
            read_serve_config(serve, check_files=False)
