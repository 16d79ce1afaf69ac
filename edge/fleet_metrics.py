"""``GET /metrics``: a run's health in the Prometheus text format (prometheus-client).

Counters and gauges are read from the run when Prometheus scrapes (nothing is
kept twice); only the per-stage latency histograms are observed frame by
frame. The process's resident memory and CPU come from prometheus-client's
process collector, and each thermal zone the kernel exposes
(``/sys/class/thermal/thermal_zone*/``, a Raspberry Pi's ``cpu-thermal``, a
Jetson's ``CPU-therm``) becomes ``edgecam_soc_temperature_celsius{zone=...}``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

__all__ = ["RunMetrics", "create_metrics", "soc_temperatures"]

log = logging.getLogger(__name__)

# milliseconds on a Pi 4 run from about 5 (cam) to 200 (a big input); seconds, as Prometheus expects
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)

_COUNTERS = (  # vitals key, metric name (without _total), help
    ("frames", "edgecam_frames", "Frames processed (model run, events updated, sinks written)."),
    ("dropped", "edgecam_dropped_frames", "Frames the capture dropped to stay at the newest (mode latest)."),
    ("corrupt", "edgecam_corrupt_frames", "Frames the source delivered broken; skipped."),
    ("reconnects", "edgecam_source_reconnects", "Times a lost source was reopened."),
    ("errors", "edgecam_frame_errors", "Frames that failed in the model or after it."),
    ("sink_errors", "edgecam_sink_errors", "Writes a sink or the disk refused."),
    ("events", "edgecam_events", "Events opened."),
)
_GAUGES = (
    ("fps", "edgecam_fps", "Processed frames per second (moving average)."),
    ("last_frame_age_s", "edgecam_last_frame_age_seconds", "Seconds since the last processed frame."),
    ("event_open", "edgecam_event_open", "1 while an event is open."),
)
_MQTT = (  # mqtt stats key, kind, metric name, help
    ("connected", "gauge", "edgecam_mqtt_connected", "1 while connected to the MQTT broker."),
    ("spooled", "gauge", "edgecam_mqtt_spool_messages", "Event messages waiting on disk for the broker."),
    ("spool_bytes", "gauge", "edgecam_mqtt_spool_bytes", "Bytes the waiting messages take on disk."),
    ("dropped", "counter", "edgecam_mqtt_spool_dropped", "Messages dropped, oldest first, to keep the spool in its bound."),
    ("delivered", "counter", "edgecam_mqtt_delivered", "Event messages the broker acknowledged."),
    ("disconnects", "counter", "edgecam_mqtt_disconnects", "Times the broker connection was lost."),
)


def soc_temperatures(root: str | Path = "/sys/class/thermal") -> dict[str, float]:
    """Degrees Celsius of each thermal zone the kernel exposes, by zone type (empty where there are none)."""
    out: dict[str, float] = {}
    for zone in sorted(Path(root).glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip() or zone.name
            out[kind if kind not in out else f"{kind}-{zone.name}"] = int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue  # a zone without a readable sensor (some report EINVAL while off)
    return out


class RunMetrics:
    """A Prometheus registry of one run.

    Args:
        vitals: returns the run's counters now (keys of ``_COUNTERS`` and ``_GAUGES``, and ``mqtt``: the link's stats).
        thermal_root: where the thermal zones are (a test passes a fake tree).

    Example:
        >>> metrics = RunMetrics(lambda: {"frames": 3, "fps": 12.5})  # doctest: +SKIP
        >>> metrics.observe({"detect": 21.0, "sinks": 1.5})  # doctest: +SKIP
        >>> body, content_type = metrics.render()  # doctest: +SKIP
    """

    def __init__(self, vitals: Callable[[], Mapping[str, Any]], thermal_root: str | Path = "/sys/class/thermal") -> None:
        from prometheus_client import CollectorRegistry, Histogram, ProcessCollector

        self.registry = CollectorRegistry()
        self.latency = Histogram("edgecam_stage_latency_seconds", "Time per frame in each stage of the run.",
                                 ["stage"], buckets=_BUCKETS, registry=self.registry)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU seconds, open fds
        self.registry.register(_Vitals(vitals, Path(thermal_root)))

    def observe(self, stages_ms: Mapping[str, float]) -> None:
        """One frame's milliseconds per stage."""
        for stage, ms in stages_ms.items():
            self.latency.labels(stage).observe(ms / 1000.0)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Vitals:
    """A custom collector: reads the run's counters when scraped."""

    def __init__(self, vitals: Callable[[], Mapping[str, Any]], thermal_root: Path) -> None:
        self.vitals, self.thermal_root = vitals, thermal_root

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        v = self.vitals()
        for key, name, text in _COUNTERS:
            if v.get(key) is not None:
                yield CounterMetricFamily(name, text, value=float(v[key]))
        for key, name, text in _GAUGES:
            if v.get(key) is not None:
                yield GaugeMetricFamily(name, text, value=float(v[key]))
        mqtt = v.get("mqtt") or {}
        for key, kind, name, text in _MQTT:
            if mqtt.get(key) is not None:
                family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                yield family(name, text, value=float(mqtt[key]))
        temps = soc_temperatures(self.thermal_root)
        if temps:
            g = GaugeMetricFamily("edgecam_soc_temperature_celsius", "SoC temperature per thermal zone.", labels=["zone"])
            for zone, celsius in temps.items():
                g.add_metric([zone], celsius)
            yield g


def create_metrics(vitals: Callable[[], Mapping[str, Any]]) -> RunMetrics | None:
    """A :class:`RunMetrics`, or None (logged) where prometheus-client is not installed."""
    try:
        return RunMetrics(vitals)
    except ImportError:
        log.warning("/metrics is off: it needs prometheus-client (pip install 'edgecam[fleet]')")
        return None
