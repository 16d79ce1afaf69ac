"""Inference backends, selected by key; each imports its runtime only when created."""

from __future__ import annotations

import importlib

from edge.backends.base import Backend, BackendOptions
from edge.errors import ConfigError
from edge.manifest import Manifest

# key -> "module:Class"; resolved lazily so that choosing onnxruntime never imports LiteRT.
REGISTRY: dict[str, str] = {
    "litert": "edge.backends.litert:LiteRTBackend",
    "onnxruntime": "edge.backends.onnxrt:OnnxRuntimeBackend",
}
DEFAULT_FOR_FORMAT = {
    "tflite-fp32": "litert",
    "tflite-fp16": "litert",
    "tflite-dynamic": "litert",
    "tflite-int8": "litert",
    "onnx-fp32": "onnxruntime",
    "onnx-int8": "onnxruntime",
}


def backend_class(key: str) -> type[Backend]:
    if key not in REGISTRY:
        raise ConfigError(f"backend: expected one of {sorted(REGISTRY)}; received {key!r}")
    module, name = REGISTRY[key].split(":")
    return getattr(importlib.import_module(module), name)


def create_backend(manifest: Manifest, key: str | None = None, options: BackendOptions | None = None) -> Backend:
    """Create the backend ``key`` (default: the one for the manifest's format)."""
    key = key or DEFAULT_FOR_FORMAT[manifest.format]
    return backend_class(key)(manifest, options)


__all__ = ["Backend", "BackendOptions", "REGISTRY", "backend_class", "create_backend"]
