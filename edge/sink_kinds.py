"""The table of sinks ``edgecam run --sink NAME[:ARG]`` can add to a run.

Every run writes ``frames.jsonl``, the events and the video (see
:mod:`edge.recording`); ``--sink`` adds more. An entry is a factory
``factory(out_dir, arg) -> Sink``: ``out_dir`` is the run's folder and ``arg``
the text after the first ``:`` (None without one). Other distributions add
entries under the entry-point group ``edgecam.sinks``.

Example:
    >>> make_sinks(["jsonl:/mnt/usb/frames.jsonl"], Path("runs/run/0001"))  # doctest: +SKIP
    [<edge.sinks.JsonlSink object ...>]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from edge.errors import ConfigError
from edge.plugins import GROUPS, Entry, ExtensionTable
from edge.sinks import JsonlSink, Sink

__all__ = ["SINKS", "SinkFactory", "jsonl_sink", "parse_sink_spec", "make_sinks"]

SinkFactory = Callable[[Path, "str | None"], Sink]


def jsonl_sink(out_dir: Path, arg: str | None) -> Sink:
    """A second copy of the frame records: ``jsonl:PATH`` (relative to the run's folder; default ``copy.jsonl``)."""
    path = Path(arg) if arg else Path("copy.jsonl")
    if path.suffix != ".jsonl":
        raise ConfigError(f"--sink jsonl: expected a path ending in .jsonl; received {arg!r}")
    sink = JsonlSink(path if path.is_absolute() else Path(out_dir) / path)
    sink.name = f"jsonl:{path}"
    return sink


def _check(entry: Entry, obj: Any) -> str | None:
    if not callable(obj):
        return f"expected a factory callable as factory(out_dir, arg) -> Sink; received {obj!r}"
    return None


SINKS = ExtensionTable("sink", GROUPS["sinks"], {"jsonl": "edge.sink_kinds:jsonl_sink"}, _check)


def parse_sink_spec(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:ARG`` -> (name, arg); the name must be in the table."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"--sink: expected NAME or NAME:ARG with NAME one of {sorted(SINKS.names())}; received {spec!r}")
    name, sep, arg = spec.strip().partition(":")
    SINKS.get(name)  # an unknown name says which there are
    return name, (arg if sep else None)


def make_sinks(specs: Sequence[str], out_dir: Path) -> list[Sink]:
    """The sinks ``specs`` name, made for the run folder ``out_dir``; a factory that returns no Sink is refused."""
    out: list[Sink] = []
    for spec in specs:
        name, arg = parse_sink_spec(spec)
        sink = SINKS.load(name)(Path(out_dir), arg)
        if not isinstance(sink, Sink):
            raise ConfigError(f"--sink {name}: expected its factory to return an edge.sinks.Sink; "
                              f"received {type(sink).__name__} (from {SINKS.get(name).origin})")
        out.append(sink)
    return out
