"""Exceptions raised at edgecam's boundaries.

Every error says what was expected and what was received, and names the
path or key involved, so a user can fix the input without reading the code.
"""

from __future__ import annotations


class EdgecamError(Exception):
    """Base class of every error edgecam raises on purpose."""


class DataError(EdgecamError):
    """A data folder, image, label file or calibration set is unusable."""


class ManifestError(EdgecamError):
    """A manifest is missing, malformed, of another version or does not match its artifact."""


class ArtifactError(EdgecamError):
    """A model artifact is missing, truncated or cannot be loaded by the chosen backend."""


class BackendUnavailable(EdgecamError):
    """The inference runtime a backend needs is not installed on this machine."""


class FrameError(EdgecamError):
    """A frame does not have the shape or dtype the runtime expects."""


class SourceError(EdgecamError):
    """A frame source cannot be opened, or failed and could not be reopened."""


class ConfigError(EdgecamError):
    """An option, profile or gate file has an unknown key or a bad value."""


def reject_unknown_keys(cls: type, data: object, what: str | None = None) -> None:
    """Raise ConfigError naming any key of ``data`` that is not a field of dataclass ``cls``."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)  # type: ignore[arg-type]
    if unknown:
        raise ConfigError(f"{what or cls.__name__} accepts keys {sorted(known)}; received unknown {unknown}")
