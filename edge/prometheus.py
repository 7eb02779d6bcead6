"""An optional Prometheus endpoint serving the daemon's metrics (the same counters and gauges as ``.../metrics``).

Off unless ``[metrics] prometheus_port`` is set; then ``http://<prometheus_bind>:<port>/metrics`` serves, at every
scrape, the payload the daemon would publish on ``.../metrics`` at that moment, in Prometheus's text format:

- ``spectrolite_<counter>_total``: each of the payload's ``counters`` (resets when the daemon restarts);
- ``spectrolite_<gauge>``: each of its ``gauges``;
- ``spectrolite_latency_ms{stat="p50"}``: its ``latency_ms`` (``p50``, ``p95``, ``p99``, ``max``, ``count``, ...);
- ``spectrolite_drift_active{detector="ood_q"}``: 1 for each drift detector in alert;
- ``spectrolite_exporter_errors_total``: scrapes whose metrics could not be built (logged at most once a minute).

Every sample carries the label ``device_id``.  Names keep the payload's, with any character outside
``[a-zA-Z0-9_]`` replaced by ``_`` (:func:`metric_name`).

The mapping (:func:`families`) is plain Python; only :class:`PrometheusExporter` needs the ``prometheus-client``
package (the ``prometheus`` extra), imported when the exporter is created, so importing ``edge`` never loads it.

>>> payload = {"device_id": "nir-01", "counters": {"frames_in": 3}, "gauges": {"uptime_s": 1.5},
...            "latency_ms": {"p50": 2.0}, "drift_active": ["ood_q"]}
>>> [(f.name, f.kind, f.samples) for f in families(payload)][:2]
[('spectrolite_frames_in', 'counter', [({'device_id': 'nir-01'}, 3.0)]), ('spectrolite_uptime_s', 'gauge', \
[({'device_id': 'nir-01'}, 1.5)])]
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.errors import ConfigError

if TYPE_CHECKING:
    from edge.config import EdgeConfig

__all__ = ["NAMESPACE", "Family", "metric_name", "families", "PrometheusExporter", "exporter_from_config"]

log = logging.getLogger(__name__)

#: Prefix of every metric name.
NAMESPACE = "spectrolite"
#: At most one log line per this many seconds about failing scrapes.
ERROR_LOG_INTERVAL_S = 60.0

_INVALID = re.compile(r"[^a-zA-Z0-9_]")

MetricsSource = Callable[[], "Mapping[str, Any] | None"]


def metric_name(name: str) -> str:
    """``spectrolite_<name>`` with characters Prometheus does not allow in a name replaced by ``_``.

    >>> metric_name("drift:ood_q")
    'spectrolite_drift_ood_q'
    """
    return f"{NAMESPACE}_{_INVALID.sub('_', name)}"


@dataclass(frozen=True)
class Family:
    """One metric family: its name (without the ``_total`` of a counter), ``counter`` or ``gauge``, its help text,
    and its samples as ``(labels, value)``."""

    name: str
    kind: str
    doc: str
    samples: list[tuple[dict[str, str], float]]


def families(payload: Mapping[str, Any]) -> list[Family]:
    """The metric families of one ``.../metrics`` payload (see the module docstring)."""
    device = {"device_id": str(payload.get("device_id", ""))}
    out: list[Family] = []
    for name, value in payload.get("counters", {}).items():
        out.append(Family(metric_name(name), "counter", f"counter {name} of the metrics payload",
                          [(device, float(value))]))
    for name, value in payload.get("gauges", {}).items():
        out.append(Family(metric_name(name), "gauge", f"gauge {name} of the metrics payload", [(device, float(value))]))
    latency = payload.get("latency_ms", {})
    if latency:
        out.append(Family(metric_name("latency_ms"), "gauge",
                          "latency_ms of the metrics payload (stat: p50, p95, p99, max, count, compute_p50, ...)",
                          [({**device, "stat": str(k)}, float(v)) for k, v in latency.items()]))
    out.append(Family(metric_name("drift_active"), "gauge", "1 for each drift detector in alert",
                      [({**device, "detector": str(d)}, 1.0) for d in payload.get("drift_active", [])]))
    return out


class PrometheusExporter:
    """Serves :func:`families` of ``source()`` at ``http://<bind>:<port>/metrics`` from a daemon thread.

    Parameters
    ----------
    source : callable() -> mapping or None
        Returns the current ``.../metrics`` payload (None: nothing to serve yet); called on the HTTP thread at every
        scrape, so it must be safe to call from any thread.
    bind : str
        Address to listen on (``127.0.0.1``: this host only).
    port : int
        TCP port, 1-65535.

    Raises
    ------
    ConfigError
        ``prometheus-client`` is not installed.
    """

    def __init__(self, source: MetricsSource, *, bind: str, port: int) -> None:
        try:
            import prometheus_client  # noqa: F401 - checked here so a missing package fails at start, clearly
        except ImportError:
            raise ConfigError(
                f"metrics.prometheus_port: expected the prometheus-client package with a port set ({port}), got "
                "none installed (pip install 'spectrolite[prometheus]', or set metrics.prometheus_port = 0)"
            ) from None
        self.source = source
        self.bind = bind
        self.port = port
        self.errors = 0
        self._last_error_log = -float("inf")
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{self.port}/metrics"

    def collect(self) -> Iterator[Any]:
        """The prometheus_client collector protocol: the metric families of one scrape."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        try:
            payload = self.source()
            fams = families(payload) if payload is not None else []
        except Exception as exc:  # a scrape must never take the daemon down; counted and logged
            fams = []
            with self._lock:
                self.errors += 1
                now = time.monotonic()
                quiet = now - self._last_error_log < ERROR_LOG_INTERVAL_S
                if not quiet:
                    self._last_error_log = now
            if not quiet:
                log.error("prometheus scrape: the metrics could not be built (%d failure(s) so far): %s",
                          self.errors, exc)
        for fam in fams:
            cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
            labels = sorted({k for lab, _ in fam.samples for k in lab}) or ["device_id"]
            metric = cls(fam.name, fam.doc, labels=labels)
            for lab, value in fam.samples:
                metric.add_metric([lab.get(k, "") for k in labels], value)
            yield metric
        yield CounterMetricFamily(metric_name("exporter_errors"), "scrapes whose metrics could not be built",
                                  value=float(self.errors))

    def start(self) -> None:
        """Listen and serve (raises OSError when the address cannot be bound)."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)  # a duck-typed collector: prometheus_client calls collect() at every scrape
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.bind, registry=registry)
        except OSError as exc:
            raise OSError(exc.errno, f"metrics.prometheus_port: cannot listen on {self.url}: "
                          f"{exc.strerror or exc}") from exc
        log.info("prometheus metrics at %s", self.url)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None


def exporter_from_config(config: EdgeConfig, source: MetricsSource) -> PrometheusExporter | None:
    """The exporter ``config.metrics`` asks for (not started), or None when ``prometheus_port`` is 0.

    Raises
    ------
    ConfigError
        A port is set and ``prometheus-client`` is not installed.
    """
    m = config.metrics
    if m.prometheus_port == 0:
        return None
    return PrometheusExporter(source, bind=m.prometheus_bind, port=m.prometheus_port)
