"""Data sets by their values: one-hot targets, scaling fitted on the training split and
applied to both, the split sizes, the teachers' laws and the large-feature hint
(devsim/data.py)."""
import warnings

import numpy as np
import pytest

from devsim.data import ArrayFile, DataWarning, Digits, FeatureScaling, Parity, Teacher
from devsim.params import ParamError


def assert_one_hot(y, labels, classes):
    assert y.shape == (len(labels), classes)
    assert set(np.unique(y)) == {0.0, 1.0}
    np.testing.assert_array_equal(y.sum(axis=1), 1.0)
    np.testing.assert_array_equal(y.argmax(axis=1), labels)


def test_digits_targets_are_one_hot_and_split_sizes_round():
    d = Digits(test_fraction=0.3).load(np.random.default_rng(0))
    assert len(d.x_test) == round(0.3 * 1797) and len(d.x_train) == 1797 - round(0.3 * 1797)
    assert_one_hot(d.y_train, d.labels_train, 10)
    assert_one_hot(d.y_test, d.labels_test, 10)
    assert d.n_inputs == 64 and d.n_outputs == 10 and d.is_classification


def test_digits_standard_scaling_uses_training_statistics_on_both_splits():
    # Same seed, same split: standard = (unit - mean_train) / (std_train + 1e-8), pixels
    # that are constant in the training split stay 0.
    unit = Digits(scale="unit").load(np.random.default_rng(3))
    std = Digits(scale="standard").load(np.random.default_rng(3))
    mean, spread = unit.x_train.mean(0), unit.x_train.std(0)
    np.testing.assert_allclose(std.x_train, (unit.x_train - mean) / (spread + 1e-8),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std.x_test, (unit.x_test - mean) / (spread + 1e-8),
                               rtol=1e-12, atol=1e-12)
    varying = spread > 0
    np.testing.assert_allclose(std.x_train[:, varying].std(0), 1.0, rtol=1e-4)
    assert not std.x_train[:, ~varying].any()
    np.testing.assert_array_equal(std.y_test, unit.y_test)
    np.testing.assert_array_equal(std.labels_train, unit.labels_train)
    assert np.abs(std.x_test.mean()) > 1e-3          # test statistics are not refitted


def test_splits_that_leave_a_side_empty_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ParamError, match="leaves no training sample"):
        Teacher(samples=2, test_fraction=0.75).load(rng)
    with pytest.raises(ParamError, match="leaves no test sample"):
        Teacher(samples=3, test_fraction=0.1).load(rng)
    d = Teacher(samples=3, test_fraction=0.5).load(rng)      # round(1.5) = 2 test samples
    assert (len(d.x_train), len(d.x_test)) == (1, 2)


def test_parity_words_and_signed_inputs():
    d = Parity(bits=3, signed=True).load(None)
    words = (np.arange(8)[:, None] >> np.arange(3)) & 1
    np.testing.assert_array_equal(d.x_train, 2.0 * words - 1.0)
    np.testing.assert_array_equal(d.y_train[:, 0], words.sum(1) % 2)
    np.testing.assert_array_equal(d.x_test, d.x_train)


def test_teacher_weights_and_label_noise_have_their_declared_scale():
    # y = W* x + noise with W* ~ N(0, s^2 / N): the least-squares fit recovers W*, whose
    # entries' variance lies within five standard errors (sqrt(2 / m) relative) of
    # s^2 / N; the residuals' variance is noise^2 (n - N dof, same tolerance).
    s, n_in, n_out, noise = 2.0, 20, 30, 0.3
    d = Teacher(inputs=n_in, outputs=n_out, samples=4000, weight_scale=s, noise=noise,
                test_fraction=0.25).load(np.random.default_rng(5))
    w, *_ = np.linalg.lstsq(d.x_train, d.y_train, rcond=None)
    m = w.size
    assert w.var() == pytest.approx(s ** 2 / n_in, rel=5 * np.sqrt(2 / m))
    resid = d.y_train - d.x_train @ w
    assert resid.var() == pytest.approx(noise ** 2, rel=5 * np.sqrt(2 / resid.size))
    assert d.x_train.std() == pytest.approx(1.0, rel=0.02)


def mlp_teacher(seed, samples, inputs, hidden, outputs, scale):
    """Inputs and outputs of the teacher y = tanh(x W1^T) W2^T, x ~ N(0, I) and
    W ~ N(0, scale^2 / fan_in), drawn in that order from ``seed``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, inputs))
    w1 = rng.standard_normal((hidden, inputs)) * scale / np.sqrt(inputs)
    w2 = rng.standard_normal((outputs, hidden)) * scale / np.sqrt(hidden)
    return x, np.tanh(x @ w1.T) @ w2.T


def rows_of(x_all, x):
    """Where each row of ``x`` sits in ``x_all``."""
    where = {row.tobytes(): i for i, row in enumerate(x_all)}
    return np.array([where[row.tobytes()] for row in x])


def test_mlp_teacher_outputs_and_classes():
    x_all, y_all = mlp_teacher(8, 400, 5, 7, 4, 0.5)
    r = Teacher(model="mlp", inputs=5, outputs=4, hidden=7, samples=400,
                weight_scale=0.5).load(np.random.default_rng(8))
    np.testing.assert_allclose(r.y_train, y_all[rows_of(x_all, r.x_train)], rtol=1e-12)
    np.testing.assert_allclose(r.y_test, y_all[rows_of(x_all, r.x_test)], rtol=1e-12)
    x_all, y_all = mlp_teacher(9, 400, 5, 7, 4, 1.0)
    c = Teacher(model="mlp", classes=True, inputs=5, outputs=4, hidden=7,
                samples=400).load(np.random.default_rng(9))
    np.testing.assert_array_equal(c.labels_train, y_all[rows_of(x_all, c.x_train)].argmax(1))
    assert_one_hot(c.y_train, c.labels_train, 4)
    assert_one_hot(c.y_test, c.labels_test, 4)


@pytest.mark.parametrize("method", ["unit", "standard"])
def test_file_scaling_is_fitted_on_the_training_split(tmp_path, method):
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 3.0, (60, 3))
    x[:, 2] = 7.0                                            # a constant feature
    x_test = rng.normal(5.0, 3.0, (10, 3))
    np.savez(tmp_path / "d.npz", X=x, y=rng.integers(0, 3, 60), X_test=x_test,
             y_test=rng.integers(0, 3, 10))
    d = ArrayFile(path=str(tmp_path / "d.npz"), scale=method, classes=3).load(rng)
    if method == "unit":
        offset, scale = x.min(0), x.max(0) - x.min(0)
    else:
        offset, scale = x.mean(0), x.std(0)
    scale[2] = 1.0                                           # constant: maps to 0
    np.testing.assert_allclose(d.x_train, (x - offset) / scale, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.x_test, (x_test - offset) / scale, rtol=1e-12, atol=1e-12)
    assert not d.x_train[:, 2].any()
    assert d.scaling.method == method
    np.testing.assert_allclose(d.scaling(x_test), d.x_test)
    assert_one_hot(d.y_train, d.labels_train, 3)
    assert_one_hot(d.y_test, d.labels_test, 3)


def test_feature_scaling_fit_by_hand():
    x = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    unit = FeatureScaling.fit("unit", x)
    np.testing.assert_array_equal(unit.offset, [0.0, 1.0])
    np.testing.assert_array_equal(unit.scale, [4.0, 1.0])
    standard = FeatureScaling.fit("standard", x)
    np.testing.assert_allclose(standard.scale, [np.sqrt(8 / 3), 1.0])
    np.testing.assert_allclose(standard(x)[:, 0], [-1.224744871391589, 0, 1.224744871391589])


def test_large_raw_features_get_a_hint_and_scaled_ones_do_not(tmp_path):
    rng = np.random.default_rng(2)
    for largest, warns in ((150.0, True), (99.0, False)):
        x = rng.uniform(-1, 1, (20, 2))
        x[3, 1] = largest
        np.savez(tmp_path / "d.npz", X=x, y=rng.normal(size=20))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ArrayFile(path=str(tmp_path / "d.npz")).load(rng)
            ArrayFile(path=str(tmp_path / "d.npz"), scale="unit").load(rng)
        hints = [w for w in caught if issubclass(w.category, DataWarning)]
        assert len(hints) == int(warns)
        if warns:   # pointed at the code that asked for the data
            assert "reaches 150" in str(hints[0].message) and hints[0].filename == __file__
