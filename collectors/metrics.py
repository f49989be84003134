"""Prometheus-text ``/metrics`` and JSON ``/status`` over HTTP, served from a thread.

A thread (not the collector's event loop) serves the endpoint so that scraping still answers while the loop is busy,
and a busy scraper never slows the receive loop. The collector supplies two callables that build the text and the
status dict from its counters. The text comes from the Prometheus client library (``prometheus_client``): the
collector's status as metric families, the process metrics (CPU, memory, open files) and a latency histogram.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core.supervise import Supervisor

log = logging.getLogger(__name__)

#: Buckets of the latency histogram, from a value's timestamp to stored [s].
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))


class _StatusMetrics:
    """A prometheus_client collector that turns the collector's status document into metric families at scrape."""

    def __init__(self, owner) -> None:
        self.owner = owner

    def describe(self):  # no fixed description: prometheus_client then does not call collect() at registration
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        st = self.owner.status()
        name = st["collector"]
        servers = st["servers"]
        health = st.get("store_health") or {}

        def per_server(metric, kind, help_text, key, fn=lambda v: v):
            fam = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                metric, help_text, labels=["collector", "server"])
            for s in servers:
                fam.add_metric([name, s["name"]], float(fn(s[key])))
            return fam

        def single(metric, kind, help_text, value):
            fam = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                metric, help_text, labels=["collector"])
            fam.add_metric([name], float(value))
            return fam

        def by(metric, kind, help_text, label, values):
            fam = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                metric, help_text, labels=["collector", label])
            for k, v in sorted(values.items()):
                fam.add_metric([name, k], float(v))
            return fam

        spool = st["spool"]
        tasks = st.get("tasks", {})
        yield per_server("wattline_opcua_connected", "gauge", "1 when the session to the server is up.",
                         "connected", int)
        yield per_server("wattline_opcua_values_received_total", "counter", "Values received from the server.",
                         "values_received")
        yield per_server("wattline_opcua_values_per_second", "gauge",
                         "Receive rate over the last 10 s, sampled every second [values/s].", "values_per_second")
        yield per_server("wattline_opcua_last_value_age_seconds", "gauge", "Time since the last value arrived [s].",
                         "last_value_age_s", lambda v: float("nan") if v is None else v)
        yield per_server("wattline_opcua_reconnects_total", "counter", "Sessions lost and re-established.",
                         "reconnects")
        yield per_server("wattline_opcua_resubscriptions_total", "counter",
                         "Subscriptions the server dropped and the collector created again.", "resubscriptions")
        yield per_server("wattline_opcua_bad_nodes", "gauge", "Configured nodes skipped as bad.", "bad_nodes", len)
        yield single("wattline_collector_values_written_total", "counter", "Values written to the store.",
                     st["values_written"])
        yield single("wattline_collector_backlog_values", "gauge", "Values in memory waiting for the store.",
                     st["backlog"])
        yield single("wattline_collector_spool_bytes", "gauge", "Size of the disk spool [bytes].", spool["bytes"])
        yield single("wattline_collector_spool_max_bytes", "gauge", "Bound of the disk spool [bytes].",
                     spool["max_bytes"])
        yield single("wattline_collector_spool_full", "gauge",
                     "1 when the spool is full and drops its oldest values (alarm).", int(spool["full"]))
        yield single("wattline_collector_dropped_values_total", "counter",
                     "Values lost because the spool was full.", spool["dropped_values"])
        yield single("wattline_collector_write_errors_total", "counter", "Failed store writes.", st["write_errors"])
        yield single("wattline_collector_store_down", "gauge", "1 while store writes fail (InfluxDB included).",
                     int(st["store_down"]))
        yield single("wattline_store_spool_bytes", "gauge",
                     "Size of the store's own spool (InfluxDB line protocol waiting for the server) [bytes].",
                     health.get("spool_bytes", 0))
        yield single("wattline_store_spool_dropped_lines_total", "counter",
                     "Lines the store's own spool dropped because it was full.", health.get("dropped_lines", 0))
        yield single("wattline_store_quarantined_lines_total", "counter",
                     "Lines the store rejected as bad data and set aside (quarantine file).",
                     health.get("quarantined_lines", 0))
        yield by("wattline_collector_notices_total", "counter", "Notices raised, by name.", "name",
                 self.owner.notice_counts)
        yield by("wattline_collector_task_failures_total", "counter",
                 "Unexpected exceptions of background jobs (each reported as a notice).", "task",
                 {k: v["failures"] for k, v in tasks.items()})
        yield by("wattline_collector_task_restarts_total", "counter", "Background jobs restarted after a failure.",
                 "task", {k: v["restarts"] for k, v in tasks.items()})


def collector_registry(owner):
    """A Prometheus registry for one collector: its status as metrics, process metrics and a latency histogram.

    Parameters
    ----------
    owner : object
        Has ``status()`` (the status document) and ``notice_counts`` (a Counter by notice name).

    Returns
    -------
    registry : prometheus_client.CollectorRegistry
        One per collector (tests run several in one process).
    latency : prometheus_client.Histogram
        ``wattline_collector_write_latency_seconds``: sampled delay from a value's timestamp to stored [s].
    """
    from prometheus_client import (
        CollectorRegistry,
        Histogram,
        gc_collector,
        platform_collector,
        process_collector,
    )

    registry = CollectorRegistry(auto_describe=False)
    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    registry.register(_StatusMetrics(owner))
    latency = Histogram("wattline_collector_write_latency_seconds",
                        "Delay from a value's timestamp to stored, sampled [s].", buckets=LATENCY_BUCKETS_S,
                        registry=registry)
    return registry, latency


def render_metrics(registry) -> str:
    """Prometheus text exposition (version 0.0.4) of a registry."""
    from prometheus_client import generate_latest

    return generate_latest(registry).decode("utf-8")


class MetricsServer:
    """HTTP endpoint: ``/metrics`` (Prometheus text) and ``/status`` (JSON).

    Parameters
    ----------
    listen : str
        ``host:port``; port 0 picks a free port (see :attr:`port`).
    metrics : callable
        Returns the metrics text.
    status : callable
        Returns the status dict.
    supervisor : Supervisor, optional
        Runs the serving thread (restarted after a failure, reported as a notice).
    """

    def __init__(self, listen: str, metrics: Callable[[], str], status: Callable[[], dict],
                 supervisor: Supervisor | None = None) -> None:
        host, port = listen.rsplit(":", 1)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    if self.path.split("?")[0] == "/metrics":
                        body = outer._metrics().encode()
                        ctype = "text/plain; version=0.0.4; charset=utf-8"
                    elif self.path.split("?")[0] == "/status":
                        body = json.dumps(outer._status(), default=str, ensure_ascii=False).encode()
                        ctype = "application/json"
                    else:
                        self.send_error(404, "try /metrics or /status")
                        return
                except Exception as exc:  # a bug in rendering must not kill the endpoint thread
                    log.exception("metrics rendering failed")
                    self.send_error(500, str(exc))
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not worth a log line each
                pass

        self._metrics, self._status = metrics, status
        self.httpd = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = host
        self.supervisor = supervisor if supervisor is not None else Supervisor(prefix="collector")
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        """Start serving in a supervised background thread."""
        self._thread = self.supervisor.thread("metrics-server", self.httpd.serve_forever)
        return self

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()
