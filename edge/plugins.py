"""One table per extension point, open to other distributions through entry points.

A backend, a frame source, a sink and an export format are each found in an
:class:`ExtensionTable`: edgecam's own entries first, then those other installed
distributions declare under the entry-point groups ``edgecam.backends``,
``edgecam.sources``, ``edgecam.sinks`` and ``edgecam.formats``. A third party adds one by shipping a module and one line
of packaging metadata, without editing edgecam::

    # pyproject.toml of the distribution "edgecam-hailo"
    [project.entry-points."edgecam.backends"]
    hailo = "edgecam_hailo.backend:HailoBackend"

Entries are loaded lazily: listing the names reads only metadata; a module
is imported when its entry is used. A plugin that fails to import, or is not
what its group expects, raises :class:`PluginError` naming the distribution.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from edge.errors import ConfigError

__all__ = ["GROUPS", "PluginError", "Entry", "ExtensionTable"]

log = logging.getLogger(__name__)

GROUPS = {"backends": "edgecam.backends", "sources": "edgecam.sources", "sinks": "edgecam.sinks",
          "formats": "edgecam.formats"}


class PluginError(ConfigError):
    """An extension that another distribution declares cannot be loaded or is not what its group expects."""


@dataclass(frozen=True)
class Entry:
    """One row of a table: a name, where its object lives (``module:attr``) and who provides it.

    ``dist`` is the distribution that declared it, or None for edgecam's own entries.
    """

    name: str
    target: str
    dist: str | None = None

    @property
    def origin(self) -> str:
        return "edgecam" if self.dist is None else f"distribution {self.dist!r}"

    def load(self) -> Any:
        """Import the module and return the object; a failure says which distribution is at fault."""
        module, _, attr = self.target.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in filter(None, attr.split(".")):
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError(f"{self.name!r} from {self.origin} ({self.target}) failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
        return obj


class ExtensionTable:
    """The entries of one extension point: built-in ones, then entry points of other distributions.

    Args:
        kind: what an entry is, for messages ("backend", "source", "sink").
        group: the entry-point group, e.g. ``edgecam.backends``.
        builtin: name -> ``module:attr`` of edgecam's own entries, or a function
            returning that mapping (called once, when the table is first read).
        check: called with ``(entry, loaded_object)``; returns what is wrong with
            it (a string), or None. Used to refuse a plugin of the wrong kind.

    Example:
        >>> table = ExtensionTable("sink", "edgecam.sinks", {"jsonl": "edge.sink_kinds:jsonl_sink"})
        >>> "jsonl" in table.names()
        True
    """

    def __init__(self, kind: str, group: str, builtin: Mapping[str, str] | Callable[[], Mapping[str, str]],
                 check: Callable[[Entry, Any], str | None] | None = None) -> None:
        self.kind, self.group, self._builtin, self.check = kind, group, builtin, check
        self._entries: dict[str, Entry] | None = None
        self._loaded: dict[str, Any] = {}

    def refresh(self) -> None:
        """Read the installed distributions again (after installing one in this process, or in tests)."""
        self._entries = None
        self._loaded.clear()

    def entries(self) -> dict[str, Entry]:
        """Every entry by name, built-in ones first; read once and kept."""
        if self._entries is None:
            builtin = self._builtin() if callable(self._builtin) else self._builtin
            entries = {name: Entry(name, target) for name, target in builtin.items()}
            for ep in _entry_points(self.group):
                dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown"
                if ep.name in entries:
                    log.warning("%s %r from distribution %r is ignored: %s already has one by that name",
                                self.kind, ep.name, dist, entries[ep.name].origin)
                    continue
                entries[ep.name] = Entry(ep.name, ep.value, dist)
            self._entries = entries
        return self._entries

    def names(self) -> list[str]:
        return list(self.entries())

    def get(self, name: str) -> Entry:
        entries = self.entries()
        if name not in entries:
            raise ConfigError(f"{self.kind}: expected one of {sorted(entries)}; received {name!r}")
        return entries[name]

    def load(self, name: str) -> Any:
        """The object of entry ``name``, imported on first use."""
        if name not in self._loaded:
            entry = self.get(name)
            obj = entry.load()
            problem = self.check(entry, obj) if self.check is not None else None
            if problem:
                raise PluginError(f"{self.kind} {name!r} from {entry.origin} ({entry.target}): {problem}")
            self._loaded[name] = obj
        return self._loaded[name]

    def load_all(self, skip_broken: bool = True) -> dict[str, Any]:
        """Every entry loaded; a broken plugin is logged and left out (or raises, with ``skip_broken=False``)."""
        out = {}
        for name in self.entries():
            try:
                out[name] = self.load(name)
            except PluginError as exc:
                if not skip_broken:
                    raise
                log.warning("%s", exc)
        return out


def _entry_points(group: str) -> list[Any]:
    # looked up on the module each time, so a test can patch importlib.metadata.entry_points
    try:
        return list(importlib.metadata.entry_points(group=group))
    except Exception as exc:  # a broken metadata file must not stop edgecam's own entries
        log.warning("cannot read the %s entry points: %s", group, exc)
        return []
