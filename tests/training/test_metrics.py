"""edgecam's numpy metrics equal scikit-learn's on fixed arrays."""

from __future__ import annotations

import numpy as np
import pytest

from edge import metrics as M

sk = pytest.importorskip("sklearn.metrics")


@pytest.fixture
def arrays():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    s = np.clip(y * 0.35 + rng.normal(0.4, 0.25, 300), 0, 1).round(2)  # rounding makes ties
    return y, s


def test_roc_auc(arrays):
    y, s = arrays
    assert M.roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)


def test_roc_curve(arrays):
    y, s = arrays
    fpr, tpr, thr = M.roc_curve(y, s)
    f2, t2, th2 = sk.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_allclose(thr[1:], th2[1:])


def test_average_precision(arrays):
    y, s = arrays
    assert M.average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)


def test_binary_report(arrays):
    y, s = arrays
    r = M.binary_report(y, s, threshold=0.5)
    pred = (s >= 0.5).astype(int)
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, pred))
    assert r["confusion"] == sk.confusion_matrix(y, pred).tolist()
    p, rec, f1, _ = sk.precision_recall_fscore_support(y, pred)
    assert r["per_class"]["positive"]["precision"] == pytest.approx(p[1])
    assert r["per_class"]["positive"]["recall"] == pytest.approx(rec[1])
    assert r["per_class"]["negative"]["f1"] == pytest.approx(f1[0])


def test_youden_threshold_maximises_j(arrays):
    y, s = arrays
    t = M.youden_threshold(y, s)
    fpr, tpr, thr = sk.roc_curve(y, s)
    best = thr[np.argmax(tpr - fpr)]
    # the same decisions as sklearn's threshold, with the boundary between two scores, not on one
    np.testing.assert_array_equal(s >= t, s >= best)
    assert t < best and not np.any((s >= t) & (s < best)) and not np.any(s == t)


def test_threshold_for_recall(arrays):
    y, s = arrays
    t = M.threshold_for_recall(y, s, 0.9)
    assert ((s >= t) & (y == 1)).sum() / y.sum() >= 0.9


def test_multiclass_report():
    y = np.array([0, 1, 2, 2, 1, 0, 2])
    p = np.eye(3)[[0, 2, 2, 2, 1, 1, 0]] * 0.8 + 0.066
    r = M.multiclass_report(y, p, ["a", "b", "c"])
    pred = p.argmax(1)
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, pred))


def test_one_class_only_gives_nan_auc():
    assert np.isnan(M.roc_auc([1, 1, 1], [0.2, 0.4, 0.9]))
