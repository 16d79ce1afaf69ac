"""Mixed precision for int8 artifacts: which layers stay float, chosen by what int8 does to decisions and the CAM.

Full int8 rounds every layer. Some layers cost the decisions or the heatmap far
more than others (on MobileNetV2 fine-tuned on CIFAR ship-vs-rest, full int8
agrees with Keras on 97.5 % of photos and keeps a CAM correlation of 0.88).
:mod:`export.precision_layers` names the layers of a run (Keras layer names:
``Conv1``, ``block_3_expand``, ``Conv_1``, ``logits``) and counts their
multiply-accumulates; :mod:`export.precision_fidelity` measures an artifact
against its float model; this module chooses which layers to keep in float:

* ``explicit`` keeps the layers the user names;
* ``search`` (``--int8-float auto``) first quantises everything, measures
  agreement and CAM fidelity against the float model on held-out calibration
  images, ranks the layers by what each one alone does to those figures, then
  returns them to float in that order until the targets hold, skipping a layer
  that would pass the cap on float compute or, with ``max_latency``, whose
  step would make the artifact slower than that ratio to full int8 (timed
  through the runtime by :mod:`export.precision_latency`). It is OpenVINO
  NNCF's accuracy-controlled quantisation (``max_drop``), with the heatmap as a
  second constraint.

A format supplies a :class:`MixedQuantizer` (``tflite_format.TFLiteMixed``,
``onnx_format.OnnxMixed``): quantise with some layers in float, run an artifact
on images, say which layers an artifact really holds in float, and report the
library's own per-tensor error statistics.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from edge.cam import DenseCAM
from edge.errors import ConfigError, EdgecamError
from export.precision_fidelity import (Fidelity, Reference, Targets, decisions, fidelity, margins, parse_targets,
                                       raw_cams, reference)
from export.precision_layers import MAC_KINDS, Layer, LayerNames, features_layer, float_share, layer_inventory

__all__ = [
    "MAC_KINDS", "RANKINGS", "Fidelity", "Layer", "LayerNames", "MixedQuantizer", "Plan", "Reference", "Step",
    "Targets", "TargetsNotMet", "decisions", "explicit", "features_layer", "fidelity", "float_share",
    "latency_line", "layer_inventory", "margins", "parse_float_option", "parse_targets", "raw_cams", "reference",
    "report_markdown", "search",
]

log = logging.getLogger("edgecam.export")

Latency = Callable[[bytes], float]  # an artifact's median invoke over full int8's


class TargetsNotMet(EdgecamError):
    """``--int8-float auto`` reached its cap on float compute before the fidelity targets held."""


@dataclass(frozen=True)
class Step:
    """One point of the frontier: the float layers so far, what they give, and (when timed) how slow they are."""

    added: str | None
    float_layers: tuple[str, ...]
    float_share: float
    fidelity: Fidelity
    latency: float | None = None  # median invoke against the full int8 artifact's


@dataclass(frozen=True)
class Plan:
    """The outcome of choosing float layers for one format.

    ``content`` is the artifact; ``to_manifest()`` is what its manifest records.
    ``rejected`` lists the steps ``auto`` did not take because they passed the
    latency cap, with their measured ratio.
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
    latency: float | None = None
    rejected: tuple[tuple[str, float], ...] = ()

    def to_manifest(self) -> dict:
        t = self.targets
        targets = {"agreement": t.agreement, "cam_r": t.cam_r, "max_float_share": t.max_float_share}
        measured = {"images": self.fidelity.images, "what": "held-out calibration images, against the float model"}
        if t.max_latency is not None:
            targets["max_latency"] = t.max_latency
        if self.latency is not None:
            measured["latency"] = {"ratio_to_full_int8": round(self.latency, 4), "input_size": list(t.latency_size or ()),
                                   "what": "median invoke, one thread, alternating with the full int8 artifact"}
        return {
            "mode": self.mode,
            "float_layers": list(self.float_layers),
            "float_mac_share": round(self.float_share, 6),
            "targets": targets,
            "met": self.met,
            "measured_on": measured,
            "agreement": round(self.fidelity.agreement, 6),
            "cam_r": round(self.fidelity.cam_r, 6),
        }

    def frontier(self) -> str:
        """The steps as a Markdown table: float share (and latency, when timed) against fidelity."""
        timed = any(s.latency is not None for s in self.steps)
        head = any(s.fidelity.centres_r is not None for s in self.steps)
        rows = ["| step | layer returned to float | float share of MACs | agreement | agreement far from boundary | "
                "CAM r | CAM r positives |" + (" head centres r |" if head else "")
                + (" latency × full int8 |" if timed else ""),
                "|--:|---|--:|--:|--:|--:|--:|" + ("--:|" if head else "") + ("--:|" if timed else "")]
        for i, s in enumerate(self.steps):
            f = s.fidelity
            extra = "" if not head else (f" {f.centres_r:.4f} |" if f.centres_r is not None else " |")
            extra += "" if not timed else (f" {s.latency:.2f} |" if s.latency is not None else " |")
            rows.append(f"| {i} | {s.added or '(full int8)'} | {100 * s.float_share:.1f} % | {f.agreement:.4f} | "
                        f"{f.agreement_far:.4f} | {f.cam_r:.4f} | {f.cam_r_positive:.4f} |" + extra)
        return "\n".join(rows)


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

    def outputs(self, content: bytes, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by role as float32 (a localisation head adds ``centres`` and ``sizes``)."""
        scores, features = self.run(content, images)
        return {"scores": scores, "features": features}

    @abstractmethod
    def float_layers_in(self, content: bytes) -> frozenset[str]:
        """The layers an artifact computes in float, read from its graph."""

    def tensor_errors(self) -> dict[str, dict[str, float]]:
        """Per layer, the quantisation library's own error statistics on calibration images (may be empty)."""
        return {}


def _evaluate(q: MixedQuantizer, names, ref: Reference, cam: DenseCAM, images, margin,
              content: bytes | None = None) -> tuple[bytes, Fidelity]:
    content = q.quantize(frozenset(names)) if content is None else content
    held = q.float_layers_in(content)
    if held != frozenset(names):
        raise ConfigError(f"{q.format}: asked for float layers {sorted(names)}; the artifact holds {sorted(held)} in float")
    out = q.outputs(content, images)
    return content, fidelity(ref, cam, out["scores"], out["features"], margin, out.get("centres"))


def latency_line(ratio: float | None) -> str:
    """``, latency 1.17 x full int8`` for a timed step; empty when untimed."""
    return "" if ratio is None else f", latency {ratio:.2f} x full int8"


def explicit(q: MixedQuantizer, layers: tuple[Layer, ...], names: tuple[str, ...], ref: Reference, cam: DenseCAM,
             images: np.ndarray, targets: Targets, latency: Latency | None = None) -> Plan:
    """Keep exactly ``names`` in float and measure the result (and its latency, given a timer)."""
    content, fid = _evaluate(q, names, ref, cam, images, targets.margin)
    share = float_share(layers, names)
    ratio = latency(content) if latency is not None else None
    step = Step(None, tuple(names), share, fid, ratio)
    met = fid.meets(targets) and (targets.max_latency is None or ratio is None or ratio <= targets.max_latency)
    return Plan(q.format, "explicit", tuple(names), share, fid, targets, met, (step,), (), content, ratio)


RANKINGS = ("int8-one", "float-one")


def _rank(q: MixedQuantizer, layers: tuple[Layer, ...], ref: Reference, cam: DenseCAM, images: np.ndarray,
          targets: Targets, candidates: int | None, ranking: str, errors: dict) -> tuple[list[dict], list[dict]]:
    """(rows, ranked): each candidate layer's probe figures, and the same rows in the order to return them to float."""
    order = [layer.name for layer in layers]
    macs = {layer.name: layer.macs for layer in layers}
    pool = [n for n in order if float_share(layers, [n]) <= targets.max_float_share]
    if candidates is not None and errors:
        worst = sorted(pool, key=lambda n: (errors.get(n, {}).get("rank_key", 0.0), order.index(n)), reverse=True)
        pool = sorted(worst[:candidates], key=order.index)
    rows = []
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
    return rows, ranked


@dataclass
class _Climb:
    """The state of returning layers to float one at a time: the steps taken and the best so far."""

    steps: list[Step]
    rejected: list[tuple[str, float]]
    best: tuple  # (shortfall, share, content, step)


def _climb(q: MixedQuantizer, layers: tuple[Layer, ...], ranked: list[dict], ref: Reference, cam: DenseCAM,
           images: np.ndarray, targets: Targets, say: Callable[[str], None], latency: Latency | None,
           start: tuple[bytes, Step]) -> _Climb:
    """Return the ranked layers to float in turn until the targets hold, skipping those over either cap."""
    order = [layer.name for layer in layers]
    content, first = start
    state = _Climb([first], [], (first.fidelity.shortfall(targets), 0.0, content, first))
    fid, chosen = first.fidelity, []
    for row in ranked:
        if fid.meets(targets):
            break
        trial = sorted(chosen + [row["layer"]], key=order.index)
        share = float_share(layers, trial)
        if share > targets.max_float_share:
            continue
        content = q.quantize(frozenset(trial))
        ratio = latency(content) if latency is not None else None
        if targets.max_latency is not None and ratio is not None and ratio > targets.max_latency:
            state.rejected.append((row["layer"], ratio))
            say(f"{q.format}: - {row['layer']}: not taken, latency {ratio:.2f} x full int8 > {targets.max_latency}")
            continue
        content, fid = _evaluate(q, trial, ref, cam, images, targets.margin, content)
        chosen = trial
        step = Step(row["layer"], tuple(chosen), share, fid, ratio)
        state.steps.append(step)
        say(f"{q.format}: + {row['layer']}: float share {100 * share:.1f} %, {fid.line()}{latency_line(ratio)}")
        if (fid.shortfall(targets), share) < state.best[:2]:
            state.best = (fid.shortfall(targets), share, content, step)
    return state


def search(q: MixedQuantizer, layers: tuple[Layer, ...], ref: Reference, cam: DenseCAM, images: np.ndarray,
           targets: Targets, candidates: int | None = None, say: Callable[[str], None] = print,
           ranking: str = "int8-one", latency: Latency | None = None) -> Plan:
    """Return layers to float in order of sensitivity until ``targets`` hold or the caps stop it.

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
    float in that order, skipping any that would pass the cap on float MACs
    or, with ``targets.max_latency`` and a ``latency`` timer, whose step is
    slower than that ratio to full int8 (a later, cheaper layer may still
    fit), until the targets hold; the plan is the best step (least shortfall,
    then least float). Deterministic for a deterministic timer: the same
    images and model give the same plan.

    Example:
        >>> q = OnnxMixed(OnnxCalibration(fp32, calibration), layers)  # doctest: +SKIP
        >>> ref = reference(cam, *q.run(q.float_artifact(), held_out), thresholds, "binary")  # doctest: +SKIP
        >>> plan = search(q, layers, ref, cam, held_out, Targets(cam_r=0.97))  # doctest: +SKIP
        >>> plan.float_layers, plan.met  # doctest: +SKIP
        (('Conv1', 'expanded_conv_depthwise', 'expanded_conv_project'), True)
    """
    if ranking not in RANKINGS:
        raise ConfigError(f"ranking: expected one of {RANKINGS}; received {ranking!r}")
    if targets.max_latency is not None and latency is None:
        raise ConfigError("int8 target max_latency: expected a timer for the artifacts; received none")
    content, fid = _evaluate(q, (), ref, cam, images, targets.margin)
    first = Step(None, (), 0.0, fid, latency(content) if latency is not None else None)
    say(f"{q.format}: full int8: float share 0.0 %, {fid.line()}{latency_line(first.latency)}")
    errors = q.tensor_errors()
    rows, ranked = _rank(q, layers, ref, cam, images, targets, candidates, ranking, errors) if not fid.meets(targets) else ([], [])
    climb = _climb(q, layers, ranked, ref, cam, images, targets, say, latency, (content, first))
    _, share, content, best = climb.best
    met = best.fidelity.meets(targets)
    if not met:
        say(f"{q.format}: targets (agreement >= {targets.agreement}, CAM r >= {targets.cam_r}) not met within "
            f"{100 * targets.max_float_share:.0f} % float MACs{_cap_words(targets)}; keeping the best step: "
            f"{', '.join(best.float_layers) or 'full int8'} ({100 * share:.1f} %), {best.fidelity.line()}")
    order = [layer.name for layer in layers]
    # the report shows every layer the library measured, ranked or not
    for n in order:
        if n in errors and not any(r["layer"] == n for r in rows):
            rows.append({"layer": n, "macs": next(la.macs for la in layers if la.name == n),
                         "float_share": float_share(layers, [n]), **{f"tensor_{k}": v for k, v in errors[n].items()}})
    return Plan(q.format, "auto", best.float_layers, share, best.fidelity, targets, met, tuple(climb.steps),
                tuple(sorted(rows, key=lambda r: order.index(r["layer"]))), content, best.latency, tuple(climb.rejected))


def _cap_words(t: Targets) -> str:
    return "" if t.max_latency is None else f" and {t.max_latency} x full int8's latency"


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
    if plan.latency is not None or plan.rejected:
        cap = f", cap {t.max_latency} x" if t.max_latency is not None else ""
        size = "x".join(map(str, t.latency_size)) if t.latency_size else "the manifest's input size"
        plans = f" The plan's: {plan.latency:.2f} x full int8." if plan.latency is not None else ""
        lines += ["", f"Latency: median invoke at {size}, one thread, alternating with the full int8 artifact{cap}.{plans}"]
        lines += [f"- not taken: {name}, {ratio:.2f} x full int8" for name, ratio in plan.rejected]
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


