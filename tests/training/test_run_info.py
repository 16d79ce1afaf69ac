"""run.json read through RunInfo: typed fields, unknown keys kept, missing ones named."""

from __future__ import annotations

import json

import pytest

from edge.errors import DataError
from edge.manifest import Task
from training.run import RunInfo, read_run_info

# the shape of a box-trained run's run.json (keys as training/train.py and boxtrain.py write them)
DOC = {"task": "binary", "labels": ["vessel"], "negative_label": "rest", "thresholds": [0.87],
       "threshold_rule": "frames: at most 0.1 false peaks per validation frame", "input_size": [128, 128],
       "frame_scale": 1.5, "counts": {"train": {"vessel": 900, "rest": 2100}}, "seconds": 3120.4,
       "box_training": {"positive": ["boat"], "rounds": 2}, "crop_thresholds": [0.47]}


def test_typed_fields_and_the_rest_kept_in_extra():
    info = RunInfo.from_dict(DOC)
    assert info.task is Task.BINARY and info.task == "binary"
    assert info.labels == ("vessel",) and info.thresholds == (0.87,) and info.input_size == (128, 128)
    assert info.negative_label == "rest" and info.frame_scale == 1.5 and info.head is None
    assert set(info.extra) == {"counts", "seconds", "box_training", "crop_thresholds"}
    assert info.extra["box_training"]["positive"] == ["boat"]
    assert info.to_dict() == DOC  # nothing lost on the way back


def test_defaults_of_an_older_run_json():
    info = RunInfo.from_dict({"task": "multiclass", "labels": ["a", "b", "c"], "thresholds": [0.5, 0.5, 0.5],
                              "input_size": [96, 96]})
    assert info.task is Task.MULTICLASS and info.negative_label is None and info.threshold_rule == "fixed"
    assert info.frame_scale is None and info.extra == {}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task": None, "labels": None}, r"missing key\(s\) \['task', 'labels'\]"),
        ({"task": "regression"}, "task: expected one of .*'binary'.*received 'regression'"),
        ({"thresholds": [0.5, 0.5]}, "one threshold per label"),
        ({"input_size": [128]}, r"input_size \[h, w\]"),
        ({"input_size": ["wide", 3]}, "expected numbers in input_size"),
        ({"head": [8]}, "head: expected an object"),
    ],
)
def test_a_malformed_run_json_is_refused_with_what_is_wrong(change, message):
    doc = {k: v for k, v in {**DOC, **change}.items() if v is not None}
    with pytest.raises(DataError, match=message):
        RunInfo.from_dict(doc)


def test_read_run_info_names_the_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"labels": ["ship"]}))
    with pytest.raises(DataError, match=rf"{path}: missing key\(s\) \['task', 'thresholds', 'input_size'\]"):
        read_run_info(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="expected a JSON run.json"):
        read_run_info(path)
    path.write_text(json.dumps(DOC))
    assert read_run_info(path) == RunInfo.from_dict(DOC)
