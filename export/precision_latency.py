"""How much slower a mixed-precision artifact runs than full int8, timed through the runtime edgecam ships.

``--int8-targets max_latency=1.2`` caps it. MACs are a poor stand-in for
time: the layers int8 hurts most are the first ones, which run at the highest
resolution, and at a 1088x1920 frame their float tensors are tens of megabytes,
so 22 % of MACs in float made the camera model 1.8 times slower. Each step is
therefore timed: the artifact and the full int8 one are opened through
:mod:`edge.backends` (the backend ``edgecam run`` would use, one thread) at
the timing size, warmed up, then invoked in turn, alternating which goes first,
so that a machine whose speed drifts (other jobs, clocks) slows both alike;
the ratio of the two medians is the step's latency. Fifteen invokes each: with
seven, the full int8 artifact timed against itself at 1088x1920 on a shared
2-core machine came out 0.97 and 1.06, and one mixed step 0.99 that 15
alternating invokes put at 1.20.
"""

from __future__ import annotations

import hashlib
import itertools
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edge.errors import ConfigError

Clock = Callable[[], float]


class LatencyMeter:
    """Median invoke of an artifact over the full int8 artifact's, alternating the two.

    ``open_backend(content)`` returns an :class:`edge.backends.Backend` (a
    context manager with ``prepare``, ``set_input`` and ``invoke_raw``) for an
    artifact's bytes; tests pass a stand-in, and a fake ``clock``.

    Example:
        >>> with LatencyMeter(opener, full_int8, (1088, 1920)) as meter:  # doctest: +SKIP
        ...     meter.ratio(mixed)
        1.17
    """

    def __init__(self, open_backend: Callable[[bytes], object], reference: bytes, size: tuple[int, int],
                 invokes: int = 15, warmup: int = 2, clock: Clock = time.perf_counter, seed: int = 0,
                 on_close: Callable[[], None] | None = None) -> None:
        if invokes < 1 or warmup < 0:
            raise ConfigError(f"latency: expected invokes >= 1 and warmup >= 0; received {invokes} and {warmup}")
        self._open, self.size, self.invokes, self.warmup, self._clock = open_backend, tuple(size), invokes, warmup, clock
        # one image, the same for every artifact: the time of an invoke does not depend on the pixels
        self._on_close = on_close
        self._image = np.random.default_rng(seed).integers(0, 256, (1, *self.size, 3), dtype=np.uint8)
        self._reference = self._ready(open_backend(reference))

    def _ready(self, backend):
        backend.set_input(backend.prepare(self._image))
        return backend

    def ratio(self, content: bytes) -> float:
        """The artifact's median invoke over the full int8 artifact's, measured now, side by side."""
        with self._ready(self._open(content)) as candidate:
            pair = (self._reference, candidate)
            for backend in itertools.chain.from_iterable(itertools.repeat(pair, self.warmup)):
                backend.invoke_raw()
            seconds: tuple[list[float], list[float]] = ([], [])
            for i in range(self.invokes):
                for k in ((0, 1) if i % 2 == 0 else (1, 0)):
                    t0 = self._clock()
                    pair[k].invoke_raw()
                    seconds[k].append(self._clock() - t0)
        ref = statistics.median(seconds[0])
        if ref <= 0:
            raise ConfigError(f"latency: the full int8 artifact's median invoke is {ref} s; the clock cannot time it")
        return statistics.median(seconds[1]) / ref

    def close(self) -> None:
        self._reference.close()
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> "LatencyMeter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def backend_opener(fmt: str, folder: Path, describe: Callable[[bytes], tuple], size: tuple[int, int], *,
                   task: str, labels, thresholds, cam, negative_label: str | None = None,
                   head: dict | None = None) -> Callable[[bytes], object]:
    """``content -> Backend``: the artifact written to ``folder`` with a manifest, opened as ``edgecam run`` would.

    ``describe(content)`` gives the artifact's (input, outputs) tensor specs;
    ``task``, ``labels``, ``thresholds``, ``negative_label`` and ``head`` (a
    localisation head's decoding settings) are the run's; ``cam`` is its
    :class:`edge.manifest.CamSpec`. One thread.
    """
    from edge.backends import backend_class, default_backend
    from edge.backends.base import BackendOptions
    from edge.formats import format_spec
    from edge.manifest import Manifest

    suffix = Path(format_spec(fmt).filename).suffix  # .tflite or .onnx: the runtime picks its loader by it
    counter = itertools.count()
    extra = {"head": dict(head)} if head else {}

    def open_backend(content: bytes):
        inp, outs = describe(content)
        name = f"timing-{next(counter)}{suffix}"
        (folder / name).write_bytes(content)
        manifest = Manifest(
            format=fmt, artifact=name, sha256=hashlib.sha256(content).hexdigest(), size_bytes=len(content),
            task=task, labels=tuple(labels), negative_label=negative_label,
            thresholds=tuple(float(t) for t in thresholds), threshold_rule="fixed", input=inp, outputs=outs,
            input_size=tuple(size), preprocessing={}, cam=cam, extra=extra, path=folder / f"{name}.manifest.json")
        return backend_class(default_backend(fmt))(manifest, BackendOptions(threads=1, input_size=tuple(size)))

    return open_backend


def meter_for(fmt: str, quantizer, size: tuple[int, int], cam, describe: Callable[[bytes], tuple], **run) -> LatencyMeter:
    """A :class:`LatencyMeter` for one format's mixed artifacts against its full int8 one, at ``size``.

    ``cam`` is the run's :class:`edge.manifest.CamSpec`; ``describe(content)``
    reads an artifact's (input, outputs) specs at ``size`` (the format row's
    describer); ``run`` is the run's task, labels, thresholds, negative_label
    and head, as :func:`backend_opener` takes them. The artifacts are written
    to a temporary folder the meter removes when closed.
    """
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="edgecam-latency-"))
    try:
        opener = backend_opener(fmt, folder, describe, size, cam=cam, **run)
        return LatencyMeter(opener, quantizer.quantize(frozenset()), size,
                            on_close=lambda: shutil.rmtree(folder, ignore_errors=True))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
