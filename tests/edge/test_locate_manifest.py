"""Manifest roles of the localisation head: centres and sizes come together, with extra.head, and bind by role."""

import numpy as np
import pytest

from edge.errors import ManifestError
from edge.manifest import CamSpec, Manifest, TensorSpec

HEAD = {"kind": "locate", "stride": 8, "threshold": 0.45, "nms_iou": 0.3, "size_encoding": "log(side / stride)"}


def _manifest(outputs, extra):
    return Manifest(
        format="tflite-fp32", artifact="model-fp32.tflite", sha256="0" * 64, size_bytes=1, task="binary",
        labels=("vessel",), negative_label="no_vessel", thresholds=(0.5,), threshold_rule="fixed",
        input=TensorSpec("image", "image", (1, -1, -1, 3), "float32", "serving_default_image:0"),
        outputs=tuple(outputs), input_size=(128, 128), preprocessing={}, cam=CamSpec(np.ones((4, 1)), np.zeros(1), "cell"),
        extra=extra)


# the converter's tensor names and order differ from the roles: binding goes by role
SCORES = TensorSpec("scores", "scores", (1, 1), "float32", "StatefulPartitionedCall:2")
FEATURES = TensorSpec("features", "features", (1, -1, -1, 4), "float32", "StatefulPartitionedCall:1")
CENTRES = TensorSpec("centres", "centres", (1, -1, -1, 1), "float32", "StatefulPartitionedCall:0")
SIZES = TensorSpec("sizes", "sizes", (1, -1, -1, 2), "float32", "StatefulPartitionedCall:3")


def test_head_outputs_bind_by_role_whatever_their_order_and_survive_a_round_trip():
    m = _manifest((CENTRES, FEATURES, SCORES, SIZES), {"head": HEAD})
    assert m.has_head
    assert m.output("centres").tensor == "StatefulPartitionedCall:0" and m.output("sizes").shape[-1] == 2
    again = Manifest.from_dict(m.to_dict())
    assert again.has_head and again.extra["head"] == HEAD and again.output("scores").tensor.endswith(":2")


def test_a_classifier_manifest_has_no_head():
    assert not _manifest((SCORES, FEATURES), {}).has_head


@pytest.mark.parametrize("outputs, extra, message", [
    ((SCORES, FEATURES, CENTRES), {"head": HEAD}, "one output per role"),  # sizes missing
    ((SCORES, FEATURES, CENTRES, SIZES), {}, "go together"),  # no decoding settings
    ((SCORES, FEATURES), {"head": HEAD}, "go together"),  # settings without outputs
])
def test_head_roles_and_settings_come_together(outputs, extra, message):
    with pytest.raises(ManifestError, match=message):
        _manifest(outputs, extra)
