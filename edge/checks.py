"""Option checks shared by every package: one wording for one kind of mistake.

Each check raises :class:`edge.errors.ConfigError` naming the option, what was
expected and what was received, and returns the value so a caller can write
``self.frames = positive_int("frames", frames)``.
"""

from __future__ import annotations

from typing import Any

from edge.errors import ConfigError

__all__ = ["positive_int", "non_negative_int"]


def _is_int(value: Any) -> bool:
    # bool is an int to Python, never to a user; numpy integers are welcome
    if isinstance(value, bool):
        return False
    try:
        import numpy as np

        return isinstance(value, (int, np.integer))
    except ImportError:  # pragma: no cover - numpy is a base dependency
        return isinstance(value, int)


def positive_int(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """``value`` if it is an integer ≥ 1 (or None when ``allow_none``); else a ConfigError."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 1:
        expected = "a positive integer" + (" or None" if allow_none else "")
        raise ConfigError(f"{name}: expected {expected}; received {value!r}")
    return value


def non_negative_int(name: str, value: Any) -> Any:
    """``value`` if it is an integer ≥ 0; else a ConfigError."""
    if not _is_int(value) or value < 0:
        raise ConfigError(f"{name}: expected an integer >= 0; received {value!r}")
    return value
