"""Configuration files for ``edgecam run`` and ``edgecam train``: TOML or JSON.

A file's keys are the command's flag names (``box_threshold`` or
``box-threshold`` for ``--box-threshold``; ``model`` / ``data`` for the
positional arguments), plus, for ``run``, the settings that have no flag
(:data:`RUN_SETTINGS`). Values in the file become the parser's defaults, so a
flag given on the command line wins over the file, and the file wins over the
built-in default. An unknown key is refused with its name and the valid ones.

Example ``/etc/edgecam/rpi5.toml`` (devices/edgecam.example.toml has more)::

    model = "/opt/edgecam/model/model-int8.tflite.manifest.json"
    source = "picamera2"
    smoother_alpha = 0.3
    [reconnect]
    initial = 1.0
    max = 60.0
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from edge.errors import ConfigError

__all__ = ["RUN_SETTINGS", "load_config_file", "apply_config", "effective_config", "secret_keys", "to_toml"]

# ``edgecam run`` settings of RunOptions that no flag sets: key -> (JSON type, what it means)
RUN_SETTINGS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "smoother_alpha": ((int, float), "EMA weight of the newest score for events, in (0, 1] (default 0.5)"),
    "event_label": (str, "label whose score drives events (default: the top positive label)"),
    "target_fps": ((int, float), "cap on the processed frame rate (default: no cap)"),
    "video_fps": ((int, float), "frame rate of the annotated video (default: the source's / stride, else 15)"),
    "queue_size": (int, "capture queue bound in mode 'all' (default 4)"),
    "reconnect": (dict, "table: initial, max, factor, max_attempts of the live-source backoff"),
    "source_id": (str, "names the source in every frame and event record (default: the source's description)"),
}
RECONNECT_KEYS = ("initial", "max", "factor", "max_attempts")
# named by --print-config, never printed: the effective configuration may be pasted in a ticket
SECRET_KEYS = ("live_auth",)
_URL_PASSWORD = re.compile(r"://[^/@\s]*:[^/@\s]*@")  # scheme://user:password@host
_NOT_FILE_KEYS = ("help", "config", "print_config", "verbose", "quiet")  # logging stays a flag


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The table in a ``.toml`` or ``.json`` file; ConfigError for a missing, unreadable or malformed file."""
    p = Path(path)
    if p.suffix.lower() not in (".toml", ".json"):
        raise ConfigError(f"--config expects a .toml or .json file; received {str(path)!r}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config: cannot read {p}: {exc}") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config: {p} is not valid JSON ({exc})") from None
    else:
        toml = _toml_reader(p)
        try:
            data = toml.loads(text)
        except toml.TOMLDecodeError as exc:
            raise ConfigError(f"--config: {p} is not valid TOML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: expected a table (JSON object) of settings in {p}; received {type(data).__name__}")
    return data


def _toml_reader(p: Path):
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # Python 3.10: the same parser under its PyPI name, if installed
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ConfigError(f"--config: reading {p} needs Python 3.11+ or the 'tomli' package; "
                              "received Python 3.10 without tomli (pip install tomli, or write the file as JSON)") from None
    return tomllib


def _file_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest not in _NOT_FILE_KEYS and a.dest != argparse.SUPPRESS}


def apply_config(parser: argparse.ArgumentParser, data: Mapping[str, Any], source: str,
                 settings: Mapping[str, tuple] | None = None) -> None:
    """Make the values of ``data`` (read from ``source``) the defaults of ``parser``; flags parsed after win.

    Raises:
        ConfigError: a key that is neither a flag of ``parser`` nor one of ``settings``, or a value of the wrong type.
    """
    actions, settings = _file_actions(parser), dict(settings or {})
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key in actions:
            values[key] = _coerce(actions[key], key, value, source)
        elif key in settings:
            values[key] = _setting(key, value, settings[key][0], source)
        else:
            valid = sorted(set(actions) | set(settings))
            raise ConfigError(f"{source}: unknown key {raw_key!r} for edgecam {parser.prog.split()[-1]}; "
                              f"expected one of {valid}")
    parser.set_defaults(**values)


def _setting(key: str, value: Any, kind, source: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise ConfigError(f"{source}: {key} expects {names.replace('dict', 'a table')}; received {value!r}")
    if key == "reconnect":
        unknown = sorted(set(value) - set(RECONNECT_KEYS))
        if unknown:
            raise ConfigError(f"{source}: [reconnect] accepts keys {list(RECONNECT_KEYS)}; received unknown {unknown}")
    return value


def _coerce(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """``value`` as the flag ``action`` would have stored it; ConfigError naming ``key`` if it cannot be."""
    def refuse(expected: str):
        return ConfigError(f"{source}: {key} expects {expected}; received {value!r}")

    if action.nargs == 0:  # store_true / store_false
        if not isinstance(value, bool):
            raise refuse("true or false")
        return value
    repeatable = isinstance(action, argparse._AppendAction)  # --sink: a list, empty when never given
    if repeatable or action.nargs in ("+", "*"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not (items or repeatable) or not all(isinstance(v, str) for v in items):
            raise refuse("a string or a list of strings")
        return [action.type(v) for v in items] if action.type is not None else items
    if action.type in (int, float):
        ok = isinstance(value, int) or (action.type is float and isinstance(value, float) and math.isfinite(value))
        if isinstance(value, bool) or not ok:
            raise refuse("an integer" if action.type is int else "a number")
        value = action.type(value)
    elif action.type is not None:  # a parsing function (sizes, durations): give it the text a flag would carry
        text = "x".join(str(v) for v in value) if isinstance(value, list) else value
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise refuse("a string or a number")
        try:
            value = action.type(str(text))
        except (argparse.ArgumentTypeError, ValueError, ConfigError) as exc:
            raise ConfigError(f"{source}: {key}: {exc}") from None
    elif not isinstance(value, str):
        raise refuse("a string")
    if action.choices is not None and value not in action.choices:
        raise refuse(f"one of {list(action.choices)}")
    return value


def effective_config(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     settings: Mapping[str, tuple] | None = None) -> dict[str, Any]:
    """The settings ``args`` holds, as a file would give them (None left out: absent means the default)."""
    keys = list(_file_actions(parser)) + list(settings or {})
    hidden = set(secret_keys(args))
    out: dict[str, Any] = {}
    for key in keys:
        value = getattr(args, key, None)
        if value is None or key in hidden:
            continue
        if isinstance(value, tuple) and key in ("input_size", "frame_size"):
            value = f"{value[0]}x{value[1]}"
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def secret_keys(args: argparse.Namespace) -> list[str]:
    """Keys of ``args`` that hold a secret: an auth spec, or a URL with a password in it."""
    return sorted(k for k, v in vars(args).items()
                  if v and (k in SECRET_KEYS or (isinstance(v, str) and _URL_PASSWORD.search(v))))


def to_toml(data: Mapping[str, Any], header: str = "") -> str:
    """TOML for a flat table of strings, numbers, booleans and lists of them, plus one level of sub-tables.

    Hand-written because the standard library reads TOML (tomllib) but does not
    write it, and a writer package (tomli-w) on every device only for
    ``--print-config`` is not worth it. ``tomllib.loads(to_toml(d)) == d``
    for the values a configuration holds (tested).
    """
    lines = [f"# {line}" for line in header.splitlines()]
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if k not in tables]
    for name, table in tables.items():
        lines += ["", f"[{_toml_key(name)}]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string (same escapes)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"to_toml expects strings, numbers, booleans, lists and tables; received {type(value).__name__}")
