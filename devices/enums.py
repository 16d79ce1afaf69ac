"""The enums of device profiles, derived from edgecam's tables rather than copied from them.

``Backend`` has one member per key in the backend table (:data:`edge.backends.BACKENDS`:
edgecam's own backends and those other distributions declare as entry points);
``ArtifactFormat`` one per row of the format table (:data:`edge.formats.FORMATS`)
that some backend runs: a profile names a format a device can run. A plugin
that fails to load is left out here and named when it is selected. A profile is
checked against them when it is loaded, so a profile naming a backend that is
not installed is refused with the list of those that are.
"""

from __future__ import annotations

import enum

from edge.backends import backend_keys, default_backend, formats_of
from edge.formats import format_keys

__all__ = ["Backend", "ArtifactFormat", "CaptureMode", "Arch", "member_name"]


def member_name(value: str) -> str:
    """``tflite-int8`` -> ``TFLITE_INT8``: the enum member for a table value."""
    return value.upper().replace("-", "_").replace(".", "_")


Backend = enum.Enum("Backend", [(member_name(k), k) for k in backend_keys()], type=str, module=__name__)
Backend.__doc__ = "Inference runtime a profile selects (the keys of edge.backends.BACKENDS)."


class _Format(str, enum.Enum):
    @property
    def backend(self) -> Backend:
        """The backend that runs this format by default."""
        return Backend(default_backend(self.value))


def _table_formats() -> list[str]:
    """The format table's keys, in its order, that some loadable backend runs."""
    run: set[str] = set()
    for key in backend_keys():
        try:
            run.update(formats_of(key))
        except Exception:  # noqa: BLE001 - a broken plugin must not stop the profiles; naming it says why
            continue
    return [fmt for fmt in format_keys() if fmt in run]


ArtifactFormat = _Format("ArtifactFormat", [(member_name(f), f) for f in _table_formats()], module=__name__)
ArtifactFormat.__doc__ = ("Exported artifact kinds (the format table's rows a backend runs); ``.backend`` runs it "
                          "by default.")


class CaptureMode(str, enum.Enum):
    """How the run loop takes frames from its source.

    The values are those of ``edge.sources.CaptureMode``. ``latest``: a capture
    thread keeps only the newest frame and the model takes whatever is newest
    when it is free (live cameras: latency stays bounded, frames are dropped
    when inference is slower than the camera). ``all``: every frame is
    processed in order (files, tests, offline work).
    """

    LATEST = "latest"
    ALL = "all"


class Arch(str, enum.Enum):
    AARCH64 = "aarch64"
    X86_64 = "x86_64"
