"""The shared option checks: one wording, the value returned, bool and floats refused."""

import numpy as np
import pytest

from edge.checks import non_negative_int, positive_int
from edge.errors import ConfigError
from edge.manifest import TASKS, Task


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_positive_int_returns_the_value(value):
    assert positive_int("frames", value) == value


@pytest.mark.parametrize("value", [0, -1, 1.0, "2", True, None])
def test_positive_int_refuses_with_name_and_value(value):
    with pytest.raises(ConfigError) as err:
        positive_int("frames", value)
    assert str(err.value) == f"frames: expected a positive integer; received {value!r}"


def test_positive_int_may_allow_none():
    assert positive_int("candidates", None, allow_none=True) is None
    with pytest.raises(ConfigError, match="candidates: expected a positive integer or None; received 0"):
        positive_int("candidates", 0, allow_none=True)


def test_non_negative_int():
    assert non_negative_int("warmup", 0) == 0
    with pytest.raises(ConfigError, match="warmup: expected an integer >= 0; received -2"):
        non_negative_int("warmup", -2)


def test_task_enum_is_the_strings_of_run_json():
    assert TASKS == ("binary", "multiclass", "multilabel")
    assert Task("multilabel") is Task.MULTILABEL and Task.BINARY == "binary"
    assert f"{Task.MULTICLASS}" == "multiclass"
