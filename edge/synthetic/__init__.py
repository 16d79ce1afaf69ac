"""Seeded synthetic sea scenes: ships, and the things on the sea that are not ships.

What it models: the sea seen from above (a drone, or a camera high on a mast). Water has swell,
short waves, sun glint, whitecaps and soft cloud shadows. Some scenes hold a coastline (land, a
beach and surf entering from a border) and rocks, some with white surf. Ships are rotated polygons
seen from above: a pointed bow, a deck inside a coloured hull rim, a superstructure toward the
stern, cargo on some, a faint shadow and, when under way, a fading V of white wake.

Why: the classifier trained on these stills explains itself with a Class Activation Map whose peak
must fall on the ship. If a ship were the only bright or structured thing on the water the model
would learn "bright thing on water". So coast, rocks with surf, whitecaps, glint and the wake of a
ship just outside the picture appear in both classes at the same rate, anchored ships have no wake,
and the hull and its superstructure are the only thing that tells the classes apart.

Every size is in pixels and independent of the image size, so a ship of length L px looks the same
in a 160x160 still and in a 640x360 clip. All randomness flows from ``np.random.default_rng`` seeds:
the same seed gives byte-identical images, PNG files and frames. Images are RGB uint8 (H, W, 3);
BGR appears only at OpenCV file I/O.

Example:
    >>> import numpy as np
    >>> image, boxes = render_scene(np.random.default_rng(0), SceneSpec(), n_ships=1)
    >>> image.shape, image.dtype, boxes.shape
    ((160, 160, 3), dtype('uint8'), (1, 4))
"""

from __future__ import annotations

from edge.synthetic.clip import SceneClip
from edge.synthetic.dataset import LABELS, DatasetInfo, generate_dataset, render_scene
from edge.synthetic.spec import SceneSpec, SpecError

__all__ = ["LABELS", "DatasetInfo", "SceneClip", "SceneSpec", "SpecError", "generate_dataset", "render_scene"]
