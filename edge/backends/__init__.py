"""Inference backends, selected by key; each imports its runtime only when created.

The table of backends is :data:`BACKENDS`: edgecam's own (one file each in
this package) and those other distributions declare under the entry-point
group ``edgecam.backends``. Each backend class declares its ``key``, the
``formats`` it runs and its ``options_class``; everything else derives from
the table: :func:`backend_keys` (the CLI's ``--backend`` choices and the
device profiles' enum), :func:`default_backend` (the backend for a format),
:func:`runs_format` (the CLI's backend/format matching).

A new backend is one file: subclass :class:`Backend`, set ``key``,
``formats`` and (if it has settings of its own) ``options_class``, and add
its ``module:Class`` to ``_BUILTIN`` below, or declare it as an entry point.
Import the runtime in ``_load``, not at the top of the module: the table
imports every backend module to read its formats.
"""

from __future__ import annotations

from typing import Any

from edge.backends.base import Backend, BackendOptions
from edge.errors import ConfigError
from edge.manifest import Manifest
from edge.plugins import GROUPS, Entry, ExtensionTable

# edgecam's own backends, in order of preference for a format both run
_BUILTIN = ("edge.backends.litert:LiteRTBackend", "edge.backends.onnxrt:OnnxRuntimeBackend")


def _builtin() -> dict[str, str]:
    return {Entry("builtin", target).load().key: target for target in _BUILTIN}


def _check(entry: Entry, obj: Any) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, Backend)):
        return f"expected a subclass of edge.backends.Backend; received {obj!r}"
    if getattr(obj, "key", None) != entry.name:
        return f"expected the class's key to be its entry-point name {entry.name!r}; received {getattr(obj, 'key', None)!r}"
    formats = getattr(obj, "formats", None)
    if not isinstance(formats, tuple) or not formats or not all(isinstance(f, str) for f in formats):
        return f"expected formats as a non-empty tuple of format names; received {formats!r}"
    if not (isinstance(obj.options_class, type) and issubclass(obj.options_class, BackendOptions)):
        return f"expected options_class to be BackendOptions or a subclass; received {obj.options_class!r}"
    return None


BACKENDS = ExtensionTable("backend", GROUPS["backends"], _builtin, _check)


def backend_keys() -> list[str]:
    """Every backend's key, edgecam's own first (plugins are listed, not imported)."""
    return BACKENDS.names()


def backend_class(key: str) -> type[Backend]:
    return BACKENDS.load(key)


def formats_of(key: str) -> tuple[str, ...]:
    """The artifact formats backend ``key`` runs."""
    return tuple(backend_class(key).formats)


def runs_format(key: str, fmt: str) -> bool:
    """True when backend ``key`` runs artifacts of format ``fmt``."""
    return fmt in formats_of(key)


def default_for_format() -> dict[str, str]:
    """Format -> the backend that runs it by default: the first in the table (edgecam's own before plugins)."""
    out: dict[str, str] = {}
    for key, cls in BACKENDS.load_all().items():
        for fmt in cls.formats:
            out.setdefault(fmt, key)
    return out


def default_backend(fmt: str) -> str:
    """The backend key for artifacts of format ``fmt``."""
    table = default_for_format()
    if fmt not in table:
        raise ConfigError(f"backend: no backend runs format {fmt!r}; the backends run {sorted(table)}")
    return table[fmt]


def create_backend(manifest: Manifest, key: str | None = None, options: BackendOptions | None = None) -> Backend:
    """Create the backend ``key`` (default: the one for the manifest's format)."""
    key = key or default_backend(manifest.format)
    return backend_class(key)(manifest, options)


def __getattr__(name: str) -> Any:
    # the tables as they were once spelled: derived now, not copied
    if name == "DEFAULT_FOR_FORMAT":
        return default_for_format()
    if name == "REGISTRY":
        return {key: entry.target for key, entry in BACKENDS.entries().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Backend", "BackendOptions", "BACKENDS", "backend_keys", "backend_class", "formats_of", "runs_format",
           "default_for_format", "default_backend", "create_backend"]
