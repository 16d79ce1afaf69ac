"""The Keras inference model as a SavedModel with one named signature, the input of every converter."""

from __future__ import annotations

import tempfile
from pathlib import Path

SIGNATURE = "serving_default"
INPUT_NAME = "image"


def write_saved_model(inference, out_dir: str | Path | None = None) -> Path:
    """Write ``inference`` (outputs ``scores`` and ``features``) with free batch, height and width.

    The height and width stay free so one artifact runs at the size a device
    profile asks for; the manifest records the size it was verified at.
    """
    import keras
    import tensorflow as tf

    out = Path(out_dir or tempfile.mkdtemp(prefix="edgecam_saved_"))
    archive = keras.export.ExportArchive()
    archive.track(inference)
    archive.add_endpoint(
        SIGNATURE,
        lambda image: inference(image, training=False),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name=INPUT_NAME)],
    )
    archive.write_out(str(out), verbose=False)
    return out
