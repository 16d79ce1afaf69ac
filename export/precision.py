"""Mixed precision for int8 artifacts: which layers stay float, chosen by what int8 does to decisions and the CAM.

Full int8 rounds every layer. Some layers cost the decisions or the heatmap far
more than others (on MobileNetV2 fine-tuned on CIFAR ship-vs-rest, full int8
agrees with Keras on 97.5 % of photos and keeps a CAM correlation of 0.88).
This module names the layers of a run (Keras layer names: ``Conv1``,
``block_3_expand``, ``Conv_1``, ``logits``), counts their multiply-accumulates,
and chooses which of them to keep in float:

* ``explicit`` keeps the layers the user names;
* ``search`` (``--int8-float auto``) first quantises everything, measures
  agreement and CAM fidelity against the float model on held-out calibration
  images, ranks the layers by what returning each one alone to float does to
  those figures, then returns them to float in that order until the targets
  hold or the next layer would exceed the cap on float compute. It is OpenVINO
  NNCF's accuracy-controlled quantisation (``max_drop``), with the heatmap as a
  second constraint.

A format supplies a :class:`MixedQuantizer` (``tflite_format.TFLiteMixed``,
``onnx_format.OnnxMixed``): quantise with some layers in float, run an artifact
on images, say which layers an artifact really holds in float, and report the
library's own per-tensor error statistics.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from edge.cam import DenseCAM
from edge.errors import ConfigError, EdgecamError

log = logging.getLogger("edgecam.export")

MAC_KINDS = ("conv", "depthwise", "dense")


class TargetsNotMet(EdgecamError):
    """``--int8-float auto`` reached its cap on float compute before the fidelity targets held."""


@dataclass(frozen=True)
class Layer:
    """A layer that multiplies: its Keras name, kind and multiply-accumulates at the export size."""

    name: str
    kind: str
    macs: int

    def __post_init__(self) -> None:
        if self.kind not in MAC_KINDS:
            raise ConfigError(f"layer {self.name}: expected a kind in {MAC_KINDS}; received {self.kind!r}")


@dataclass(frozen=True)
class Targets:
    """What ``auto`` must reach on the held-out calibration images, and the most float it may use.

    Attributes:
        agreement: share of images whose decisions match the float model.
        cam_r: mean per-image Pearson correlation of the CAM with the float model's.
        max_float_share: cap on the share of multiply-accumulates left in float.
        margin: an image is *near the boundary* when the float model's logit lies
            within this distance of the threshold's logit; flips there are expected.
    """

    agreement: float = 0.995
    cam_r: float = 0.97
    max_float_share: float = 0.25
    margin: float = 1.0

    def __post_init__(self) -> None:
        for name in ("agreement", "cam_r", "max_float_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"int8 target {name}: expected a value in [0, 1]; received {v}")
        if self.margin < 0:
            raise ConfigError(f"int8 target margin: expected >= 0; received {self.margin}")


@dataclass(frozen=True)
class Fidelity:
    """An artifact against its float model on the same images."""

    images: int
    agreement: float
    near: int  # images within the margin of the threshold
    agreement_far: float  # agreement on the others
    cam_r: float
    positives: int  # images the float model calls positive
    cam_r_positive: float
    top20_iou: float

    def meets(self, t: Targets) -> bool:
        return self.agreement >= t.agreement and self.cam_r >= t.cam_r

    def shortfall(self, t: Targets) -> float:
        """How far from the targets, each gap measured against the room the target leaves (0 when met)."""
        gap_a = max(0.0, t.agreement - self.agreement) / max(1e-6, 1.0 - t.agreement)
        gap_c = max(0.0, t.cam_r - self.cam_r) / max(1e-6, 1.0 - t.cam_r)
        return gap_a + gap_c

    def line(self) -> str:
        return (f"agreement {self.agreement:.4f} (far {self.agreement_far:.4f}), "
                f"CAM r {self.cam_r:.4f} (positives {self.cam_r_positive:.4f})")


@dataclass(frozen=True)
class Step:
    """One point of the frontier: the float layers so far and what they give."""

    added: str | None
    float_layers: tuple[str, ...]
    float_share: float
    fidelity: Fidelity


@dataclass(frozen=True)
class Plan:
    """The outcome of choosing float layers for one format.

    ``content`` is the artifact; ``to_manifest()`` is what its manifest records.
    """

    format: str
    mode: str  # "auto" or "explicit"
    float_layers: tuple[str, ...]
    float_share: float
    fidelity: Fidelity
    targets: Targets
    met: bool
    steps: tuple[Step, ...]
    sensitivity: tuple[dict, ...] = ()
    content: bytes = field(default=b"", repr=False)

    def to_manifest(self) -> dict:
        return {
            "mode": self.mode,
            "float_layers": list(self.float_layers),
            "float_mac_share": round(self.float_share, 6),
            "targets": {"agreement": self.targets.agreement, "cam_r": self.targets.cam_r,
                        "max_float_share": self.targets.max_float_share},
            "met": self.met,
            "measured_on": {"images": self.fidelity.images, "what": "held-out calibration images, against the float model"},
            "agreement": round(self.fidelity.agreement, 6),
            "cam_r": round(self.fidelity.cam_r, 6),
        }

    def frontier(self) -> str:
        """The steps as a Markdown table: float share against fidelity."""
        rows = ["| step | layer returned to float | float share of MACs | agreement | agreement far from boundary | CAM r | CAM r positives |",
                "|--:|---|--:|--:|--:|--:|--:|"]
        for i, s in enumerate(self.steps):
            f = s.fidelity
            rows.append(f"| {i} | {s.added or '(full int8)'} | {100 * s.float_share:.1f} % | {f.agreement:.4f} | "
                        f"{f.agreement_far:.4f} | {f.cam_r:.4f} | {f.cam_r_positive:.4f} |")
        return "\n".join(rows)


# --- layers and their names inside artifacts ---------------------------------


def layer_inventory(model, task: str, input_size: tuple[int, int]) -> tuple[Layer, ...]:
    """The multiplying layers of a trained run's inference graph, in graph order, with MACs at ``input_size``."""
    import keras

    from training.model import BACKBONE, LOGITS, inference_model, is_cell_pooled

    inf = inference_model(model, task, input_size=tuple(input_size))
    backbone = next(layer for layer in inf.layers if layer.name == BACKBONE or isinstance(layer, keras.Model))
    layers = []
    last_cells = 1
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            layers.append(Layer(layer.name, "depthwise", int(h * w * c * kh * kw)))
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1] // layer.groups
            layers.append(Layer(layer.name, "conv", int(h * w * c * kh * kw * cin)))
            last_cells = int(h * w)
    dense = model.get_layer(LOGITS)
    k, c = dense.kernel.shape
    cells = last_cells if is_cell_pooled(model) else 1
    layers.append(Layer(LOGITS, "dense", int(cells * k * c)))
    return tuple(layers)


def features_layer(layers: tuple[Layer, ...]) -> str:
    """The layer whose output is the ``features`` map: the last convolution."""
    return [layer.name for layer in layers if layer.kind != "dense"][-1]


class LayerNames:
    """Maps a node or tensor name inside an artifact to the Keras layer it computes.

    Converters keep Keras layer names inside their own (TFLite:
    ``.../block_3_expand_relu_1/Relu6;.../block_3_expand_1/convolution``;
    tf2onnx: ``.../block_3_expand_BN_1/batchnorm/mul_1``). A layer's batch
    norm and activation count as the layer, and so do the zero padding on an
    expansion's output and the residual add on a projection's output; the
    global pool and the output activation count as the dense head
    (``logits``); the signature's own output names (TFLite calls them
    ``StatefulPartitionedCall:N``) are passed in ``exact``.
    """

    def __init__(self, layers: tuple[Layer, ...], exact: dict[str, str] | None = None) -> None:
        self.layers = tuple(layer.name for layer in layers)
        head = next((layer.name for layer in layers if layer.kind == "dense"), None)
        last = features_layer(layers)
        alias: dict[str, str] = {}
        for name in self.layers:
            for a in (name, f"{name}_BN", f"{name}_bn", f"bn_{name}", f"{name}_relu"):
                alias[a] = name
        alias["out_relu"] = last
        # the rescaling in front of the first convolution goes with it
        alias["preprocess"] = next(layer.name for layer in layers if layer.kind != "dense")
        # An element-wise op on a layer's output goes with the layer: a float
        # layer whose output still passes an int8 PAD (before a strided
        # depthwise) or residual ADD is rounded there all the same.
        for name in self.layers:
            block = re.match(r"(block_\d+)_(expand|project)$", name)
            if block:
                alias[f"{block.group(1)}_{'pad' if block.group(2) == 'expand' else 'add'}"] = name
        if head:
            alias.update(pool=head, scores=head)
        self._alias = alias
        self._exact = dict(exact or {})

    def of(self, name: str) -> str | None:
        for tensor, layer in self._exact.items():
            if name == tensor or name.startswith(tensor + ":") or f"/{tensor}:" in name:
                return layer
        for segment in re.split(r"[/;]", name):
            for candidate in (segment, re.sub(r"_\d+$", "", segment)):
                if candidate in self._alias:
                    return self._alias[candidate]
        return None

    def check(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """``names`` validated against the run's layers; an unknown name fails loudly with the valid ones."""
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise ConfigError(f"--int8-float: unknown layer(s) {unknown}; this model's layers are {list(self.layers)}")
        order = {n: i for i, n in enumerate(self.layers)}
        return tuple(sorted(set(names), key=order.__getitem__))


def float_share(layers: tuple[Layer, ...], names) -> float:
    total = sum(layer.macs for layer in layers)
    kept = sum(layer.macs for layer in layers if layer.name in set(names))
    return kept / total if total else 0.0


# --- fidelity ------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The float model's outputs on the held-out images."""

    scores: np.ndarray  # (N, C)
    cams: np.ndarray  # (N, h, w) raw CAM of the float model's top class
    classes: np.ndarray  # (N,) that class
    thresholds: np.ndarray  # (C,)
    task: str


def decisions(scores: np.ndarray, thresholds: np.ndarray, task: str) -> np.ndarray:
    if task == "multiclass":
        return scores.argmax(1)[:, None]
    return scores >= thresholds


def margins(scores: np.ndarray, thresholds: np.ndarray, task: str) -> np.ndarray:
    """Per image, the smallest distance in logits between a score and its decision boundary."""
    p = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    if task == "multiclass":
        top = np.sort(np.log(p), axis=1)
        return top[:, -1] - top[:, -2]
    t = np.clip(thresholds.astype(np.float64), 1e-7, 1 - 1e-7)
    logit = np.log(p / (1 - p))
    return np.abs(logit - np.log(t / (1 - t))).min(axis=1)


def raw_cams(cam: DenseCAM, features: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Raw CAM per image through the runtime's :class:`edge.cam.DenseCAM`."""
    return np.stack([cam.raw(f, int(c)) for f, c in zip(features, classes)])


def reference(cam: DenseCAM, scores: np.ndarray, features: np.ndarray, thresholds, task: str) -> Reference:
    scores = np.asarray(scores, np.float32)
    classes = scores.argmax(1)
    return Reference(scores, raw_cams(cam, features, classes), classes, np.asarray(thresholds, np.float32), task)


def fidelity(ref: Reference, cam: DenseCAM, scores: np.ndarray, features: np.ndarray, margin: float = 1.0) -> Fidelity:
    """Decisions and CAM of an artifact against the float reference (the CAM of the reference's class)."""
    from edge.metrics import pearson, top_region_iou

    scores = np.asarray(scores, np.float32)
    same = (decisions(scores, ref.thresholds, ref.task) == decisions(ref.scores, ref.thresholds, ref.task)).all(1)
    near = margins(ref.scores, ref.thresholds, ref.task) < margin
    cams = raw_cams(cam, features, ref.classes)
    r = np.array([pearson(a, b) for a, b in zip(cams, ref.cams)])
    iou = np.array([top_region_iou(a, b) for a, b in zip(cams, ref.cams)])
    pos = decisions(ref.scores, ref.thresholds, ref.task).any(1) if ref.task != "multiclass" else np.ones(len(r), bool)
    return Fidelity(
        images=int(len(scores)), agreement=float(same.mean()), near=int(near.sum()),
        agreement_far=float(same[~near].mean()) if (~near).any() else 1.0,
        cam_r=float(r.mean()), positives=int(pos.sum()),
        cam_r_positive=float(r[pos].mean()) if pos.any() else float("nan"), top20_iou=float(iou.mean()),
    )


# --- the format side and the search -------------------------------------------------


class MixedQuantizer(ABC):
    """One format's way to quantise with chosen layers left in float."""

    format: str

    @abstractmethod
    def quantize(self, float_layers: frozenset[str]) -> bytes:
        """The artifact with ``float_layers`` in float and every other layer int8."""

    @abstractmethod
    def float_artifact(self) -> bytes:
        """The float artifact the int8 ones are measured against."""

    @abstractmethod
    def run(self, content: bytes, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, features) as float32 on raw 0..255 images."""

    @abstractmethod
    def float_layers_in(self, content: bytes) -> frozenset[str]:
        """The layers an artifact computes in float, read from its graph."""

    def tensor_errors(self) -> dict[str, dict[str, float]]:
        """Per layer, the quantisation library's own error statistics on calibration images (may be empty)."""
        return {}


def _evaluate(q: MixedQuantizer, names, ref: Reference, cam: DenseCAM, images, margin) -> tuple[bytes, Fidelity]:
    content = q.quantize(frozenset(names))
    held = q.float_layers_in(content)
    if held != frozenset(names):
        raise ConfigError(f"{q.format}: asked for float layers {sorted(names)}; the artifact holds {sorted(held)} in float")
    scores, feats = q.run(content, images)
    return content, fidelity(ref, cam, scores, feats, margin)


def explicit(q: MixedQuantizer, layers: tuple[Layer, ...], names: tuple[str, ...], ref: Reference, cam: DenseCAM,
             images: np.ndarray, targets: Targets) -> Plan:
    """Keep exactly ``names`` in float and measure the result."""
    content, fid = _evaluate(q, names, ref, cam, images, targets.margin)
    share = float_share(layers, names)
    step = Step(None, tuple(names), share, fid)
    return Plan(q.format, "explicit", tuple(names), share, fid, targets, fid.meets(targets), (step,), (), content)


RANKINGS = ("int8-one", "float-one")


def search(q: MixedQuantizer, layers: tuple[Layer, ...], ref: Reference, cam: DenseCAM, images: np.ndarray,
           targets: Targets, candidates: int | None = None, say: Callable[[str], None] = print,
           ranking: str = "int8-one") -> Plan:
    """Return layers to float in order of sensitivity until ``targets`` hold or the cap stops it.

    A layer's sensitivity is measured on the held-out images as the shortfall
    from the targets (agreement and CAM r together) of one of two models:

    * ``int8-one`` (default): only that layer in int8, every other layer
      float: what its own rounding costs. One badly quantised layer cannot
      hide the others here;
    * ``float-one``: only that layer back in float, the rest int8 (NNCF's
      way): what returning it alone gains. Where one layer dominates the
      error, every other layer looks useless next to it.

    Ties go to the lower CAM r, then to the cheaper layer. ``candidates``
    limits the ranking to the layers the library's tensor statistics call
    worst (``None``: every layer under the cap). Layers are then returned to
    float in that order, skipping any that would pass the cap, until the
    targets hold; the plan is the best step (least shortfall, then least
    float). Deterministic: the same images and model give the same plan.

    Example:
        >>> q = OnnxMixed(OnnxCalibration(fp32, calibration), layers)  # doctest: +SKIP
        >>> ref = reference(cam, *q.run(q.float_artifact(), held_out), thresholds, "binary")  # doctest: +SKIP
        >>> plan = search(q, layers, ref, cam, held_out, Targets(cam_r=0.97))  # doctest: +SKIP
        >>> plan.float_layers, plan.met  # doctest: +SKIP
        (('Conv1', 'expanded_conv_depthwise', 'expanded_conv_project'), True)
    """
    if ranking not in RANKINGS:
        raise ConfigError(f"ranking: expected one of {RANKINGS}; received {ranking!r}")
    order = [layer.name for layer in layers]
    macs = {layer.name: layer.macs for layer in layers}
    content, fid = _evaluate(q, (), ref, cam, images, targets.margin)
    steps = [Step(None, (), 0.0, fid)]
    say(f"{q.format}: full int8: float share 0.0 %, {fid.line()}")
    errors = q.tensor_errors()
    pool = [n for n in order if float_share(layers, [n]) <= targets.max_float_share]
    if candidates is not None and errors:
        worst = sorted(pool, key=lambda n: (errors.get(n, {}).get("rank_key", 0.0), order.index(n)), reverse=True)
        pool = sorted(worst[:candidates], key=order.index)
    rows = []
    if not fid.meets(targets):
        for n in pool:
            probe = (n,) if ranking == "float-one" else tuple(m for m in order if m != n)
            _, f1 = _evaluate(q, probe, ref, cam, images, targets.margin)
            rows.append({"layer": n, "macs": macs[n], "float_share": float_share(layers, [n]), "probe": ranking,
                         **_fid_dict(f1), "shortfall": f1.shortfall(targets),
                         **{f"tensor_{k}": v for k, v in errors.get(n, {}).items()}})
            log.info("%s: %s %s: %s", q.format, n, "alone in float" if ranking == "float-one" else "alone in int8", f1.line())
    if ranking == "float-one":  # the most gain first
        ranked = sorted(rows, key=lambda r: (r["shortfall"], -r["cam_r"], r["macs"], order.index(r["layer"])))
    else:  # the most damage first
        ranked = sorted(rows, key=lambda r: (-r["shortfall"], r["cam_r"], r["agreement"], r["macs"], order.index(r["layer"])))
    chosen: list[str] = []
    best = (fid.shortfall(targets), 0.0, content, fid, ())
    for row in ranked:
        if fid.meets(targets):
            break
        trial = sorted(chosen + [row["layer"]], key=order.index)
        share = float_share(layers, trial)
        if share > targets.max_float_share:
            continue
        content, fid = _evaluate(q, trial, ref, cam, images, targets.margin)
        chosen = trial
        steps.append(Step(row["layer"], tuple(chosen), share, fid))
        say(f"{q.format}: + {row['layer']}: float share {100 * share:.1f} %, {fid.line()}")
        if (fid.shortfall(targets), share) < best[:2]:
            best = (fid.shortfall(targets), share, content, fid, tuple(chosen))
    _, share, content, fid, chosen = best
    met = fid.meets(targets)
    if not met:
        say(f"{q.format}: targets (agreement >= {targets.agreement}, CAM r >= {targets.cam_r}) not met within "
            f"{100 * targets.max_float_share:.0f} % float MACs; keeping the best step: "
            f"{', '.join(chosen) or 'full int8'} ({100 * share:.1f} %), {fid.line()}")
    # the report shows every layer the library measured, ranked or not
    for n in order:
        if n in errors and not any(r["layer"] == n for r in rows):
            rows.append({"layer": n, "macs": macs[n], "float_share": float_share(layers, [n]),
                         **{f"tensor_{k}": v for k, v in errors[n].items()}})
    return Plan(q.format, "auto", chosen, share, fid, targets, met, tuple(steps),
                tuple(sorted(rows, key=lambda r: order.index(r["layer"]))), content)


def _fid_dict(f: Fidelity) -> dict:
    d = asdict(f)
    d.pop("images")
    return d


def report_markdown(plan: Plan) -> str:
    """The plan, its frontier and the per-layer sensitivity as Markdown."""
    t = plan.targets
    lines = [
        f"# {plan.format}: mixed precision ({plan.mode})",
        "",
        f"Targets on {plan.fidelity.images} held-out calibration images, against the float model: agreement >= {t.agreement}, "
        f"CAM r >= {t.cam_r}, float share of MACs <= {100 * t.max_float_share:.0f} %. "
        f"**{'Met' if plan.met else 'Not met'}** with {len(plan.float_layers)} float layer(s) "
        f"({', '.join(plan.float_layers) or 'none'}), {100 * plan.float_share:.1f} % of MACs: {plan.fidelity.line()}.",
        "",
        "## Frontier",
        "",
        plan.frontier(),
    ]
    if plan.sensitivity:
        keys = [k for k in plan.sensitivity[0] if k.startswith("tensor_")] or \
            sorted({k for r in plan.sensitivity for k in r if k.startswith("tensor_")})
        probe = next((r["probe"] for r in plan.sensitivity if "probe" in r), "float-one")
        title = "only this layer in float, the rest int8" if probe == "float-one" else "only this layer in int8, the rest float"
        lines += ["", f"## Sensitivity: {title}", "",
                  "| layer | share of MACs | agreement | CAM r | CAM r positives | shortfall | " + " | ".join(k[7:] for k in keys) + " |",
                  "|---|--:|--:|--:|--:|--:|" + "--:|" * len(keys)]
        for r in plan.sensitivity:
            def num(k, fmt):
                return format(r[k], fmt) if k in r and r[k] is not None else ""
            lines.append(f"| {r['layer']} | {100 * r['float_share']:.2f} % | {num('agreement', '.4f')} | {num('cam_r', '.4f')} | "
                         f"{num('cam_r_positive', '.4f')} | {num('shortfall', '.3f')} | " + " | ".join(num(k, '.3g') for k in keys) + " |")
    return "\n".join(lines) + "\n"


def parse_float_option(text: str) -> tuple[str, tuple[str, ...]]:
    """``none`` / ``auto`` / ``LAYER,LAYER`` -> (mode, layers)."""
    text = (text or "none").strip()
    if text in ("none", "auto"):
        return text, ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError(f"--int8-float: expected none, auto or a comma list of layer names; received {text!r}")
    return "explicit", names


def parse_targets(text: str | None) -> Targets:
    """``agreement=0.995,cam_r=0.97,max_float=0.25,margin=1`` (any subset) -> :class:`Targets`."""
    if not text:
        return Targets()
    keys = {"agreement": "agreement", "cam_r": "cam_r", "max_float": "max_float_share", "margin": "margin"}
    values = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip() not in keys or not value:
            raise ConfigError(f"--int8-targets: expected KEY=VALUE with KEY in {list(keys)}; received {part!r}")
        try:
            values[keys[key.strip()]] = float(value)
        except ValueError:
            raise ConfigError(f"--int8-targets: {key.strip()} expects a number; received {value!r}") from None
    return Targets(**values)
