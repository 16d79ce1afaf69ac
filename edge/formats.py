"""The table of artifact formats: what each format is, readable on a device.

A row (:class:`FormatSpec`) is a format's identity: its key (``tflite-int8``),
the file it is written to, its family, whether it needs calibration images
and the parity gates ``edgecam verify`` holds it to by default. How a format
is *made* lives in export/ (TensorFlow, tf2onnx); the row names that code as
``exporter = "module:attr"`` and only ``edgecam export`` imports it, so the
device runtime reads this table without TensorFlow.

Everything that lists formats derives from :data:`FORMATS`: the manifest's
accepted formats (:mod:`edge.manifest`), ``edgecam export --formats``, the
default gates of :mod:`export.verify` and the format enum of device profiles
(:mod:`devices.enums`). Another distribution adds a format with an entry
point in the group ``edgecam.formats`` whose name is the format's key and
whose object is a :class:`FormatSpec`::

    [project.entry-points."edgecam.formats"]
    onnx-fp16 = "edgecam_fp16.format:ONNX_FP16"

Example:
    >>> format_spec("tflite-int8").needs_calibration
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Mapping

from edge.errors import ConfigError
from edge.plugins import GROUPS, Entry, ExtensionTable

__all__ = ["Gates", "FormatSpec", "FormatExporter", "FORMATS", "RUN_PREFERENCE", "format_keys", "format_spec", "format_specs",
           "run_preference"]


@dataclass(frozen=True)
class Gates:
    """Parity gates of one format: an artifact fails ``edgecam verify`` when a figure crosses one.

    A gate left ``None`` is not checked. ``allow_collapse`` lets an artifact
    whose predictions collapsed to one class pass (for a deliberately broken one).
    """

    max_abs_score_diff: float | None = None
    max_mean_abs_score_diff: float | None = None
    min_agreement: float | None = None
    max_balanced_accuracy_drop: float | None = None
    min_cam_correlation: float | None = None
    allow_collapse: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "allow_collapse":
                if not isinstance(value, bool):
                    raise ConfigError(f"gate allow_collapse: expected true or false; received {value!r}")
            elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"gate {f.name}: expected a number or null; received {value!r}")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def updated(self, values: Mapping[str, Any], where: str = "gates") -> "Gates":
        """These gates with ``values`` (gate name -> value) replacing some; an unknown name is refused."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: expected an object of gate -> value; received {type(values).__name__}")
        bad = sorted(set(values) - set(self.keys()))
        if bad:
            raise ConfigError(f"{where}: unknown gate(s) {bad}; expected some of {list(self.keys())}")
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        """The gates that are set (as in a gate file), and ``allow_collapse``."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class FormatSpec:
    """One export format.

    Attributes:
        key: the name users and manifests give it, e.g. ``onnx-int8``.
        filename: the artifact's file name in an export folder.
        family: the runtime family (``tflite``, ``onnx``, or a plugin's own).
        needs_calibration: an int8 format, quantised on real images (``--calib``);
            only these may keep layers in float (``--int8-float``).
        gates: what ``edgecam verify`` holds the format to by default.
        exporter: ``module:attr`` of the :class:`FormatExporter` that converts a model to
            this format (edgecam's own are in :mod:`export.converters`); imported only by ``edgecam export``.
    """

    key: str
    filename: str
    family: str
    needs_calibration: bool = False
    gates: Gates = field(default_factory=Gates)
    exporter: str = ""

    def __post_init__(self) -> None:
        for name in ("key", "filename", "family", "exporter"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"format {self.key!r}: {name}: expected a non-empty string; received {value!r}")
        if ":" not in self.exporter:
            raise ConfigError(f"format {self.key!r}: exporter: expected 'module:attr'; received {self.exporter!r}")
        if "/" in self.filename or "\\" in self.filename:
            raise ConfigError(f"format {self.key!r}: filename: expected a plain file name; received {self.filename!r}")


@dataclass(frozen=True)
class FormatExporter:
    """The export side of a format row: its converter, its describer and the signature a runtime calls.

    ``convert(spec, ctx) -> export.converters.Conversion`` makes the artifact's bytes from an
    :class:`export.converters.ExportContext`; ``describe(content, ctx) -> (input, outputs)``
    reads its tensors back as :class:`edge.manifest.TensorSpec`. Both import export code
    (TensorFlow, tf2onnx) when called, never at import, so a module that declares a
    format's row and its exporter together still loads on a device.
    """

    convert: Callable[[FormatSpec, Any], Any]
    describe: Callable[[bytes, Any], tuple[Any, tuple[Any, ...]]]
    signature: str | None = None


_TFLITE, _ONNX = "export.converters:TFLITE", "export.converters:ONNX"
_FLOAT_GATES = Gates(max_abs_score_diff=1e-4, min_agreement=0.999, min_cam_correlation=0.999)
_INT8_GATES = Gates(min_agreement=0.97, max_balanced_accuracy_drop=0.02, min_cam_correlation=0.90)

TFLITE_FP32 = FormatSpec("tflite-fp32", "model-fp32.tflite", "tflite", False, _FLOAT_GATES, _TFLITE)
# float16 weights: the worst image can move by 0.1+ where the sigmoid is steep, so the
# gate is on the mean difference and on decisions, not on the single worst score
TFLITE_FP16 = FormatSpec("tflite-fp16", "model-fp16.tflite", "tflite", False,
                         Gates(max_mean_abs_score_diff=5e-3, min_agreement=0.99, min_cam_correlation=0.99), _TFLITE)
TFLITE_DYNAMIC = FormatSpec("tflite-dynamic", "model-dynamic.tflite", "tflite", False,
                            Gates(min_agreement=0.98, max_balanced_accuracy_drop=0.02, min_cam_correlation=0.95), _TFLITE)
TFLITE_INT8 = FormatSpec("tflite-int8", "model-int8.tflite", "tflite", True, _INT8_GATES, _TFLITE)
ONNX_FP32 = FormatSpec("onnx-fp32", "model-fp32.onnx", "onnx", False, _FLOAT_GATES, _ONNX)
ONNX_INT8 = FormatSpec("onnx-int8", "model-int8.onnx", "onnx", True, _INT8_GATES, _ONNX)

# edgecam's own formats, in the order `--formats all` exports them
_BUILTIN = {spec.key: f"{__name__}:{name}" for name, spec in [
    ("TFLITE_FP32", TFLITE_FP32), ("TFLITE_FP16", TFLITE_FP16), ("TFLITE_DYNAMIC", TFLITE_DYNAMIC),
    ("TFLITE_INT8", TFLITE_INT8), ("ONNX_FP32", ONNX_FP32), ("ONNX_INT8", ONNX_INT8)]}


def _check(entry: Entry, obj: Any) -> str | None:
    if not isinstance(obj, FormatSpec):
        return f"expected an edge.formats.FormatSpec; received {obj!r}"
    if obj.key != entry.name:
        return f"expected the format's key to be its entry-point name {entry.name!r}; received {obj.key!r}"
    return None


FORMATS = ExtensionTable("format", GROUPS["formats"], _BUILTIN, _check)


def format_keys() -> list[str]:
    """Every format's key, edgecam's own first (plugins are listed, not imported)."""
    return FORMATS.names()


# which of edgecam's formats `edgecam run` takes from an export folder first, when neither the device profile nor
# the user names one: int8 TFLite is the fastest on the CPUs edgecam targets, the float formats follow
RUN_PREFERENCE = ("tflite-int8", "tflite-fp32", "onnx-fp32", "onnx-int8", "tflite-fp16", "tflite-dynamic")


def run_preference() -> list[str]:
    """Every format's key in the order ``edgecam run`` picks one from a folder: ``RUN_PREFERENCE``, then the rest
    of the table (plugins' formats) in its order, so a folder holding only a plugin's artifact is still run."""
    return [*RUN_PREFERENCE, *(k for k in format_keys() if k not in RUN_PREFERENCE)]


def format_spec(key: str) -> FormatSpec:
    """The row of format ``key``; an unknown key says which there are."""
    return FORMATS.load(key)


def format_specs() -> dict[str, FormatSpec]:
    """Every format that loads, by key (a broken plugin is logged and left out)."""
    return FORMATS.load_all()
