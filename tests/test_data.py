"""Data sets and the sample stream."""
import h5py
import numpy as np
import pytest

from devsim.data import ArrayFile, Digits, Parity, SampleStream, Teacher
from devsim.params import ParamError


def test_stream_holds_each_sample_tau_x_steps_across_calls():
    stream = SampleStream(7, 3, np.random.default_rng(0))
    parts = [stream.next(n) for n in (2, 5, 1, 13)]
    idx = np.concatenate([p[0] for p in parts])
    new = np.concatenate([p[1] for p in parts])
    assert np.array_equal(new, np.arange(21) % 3 == 0)
    runs = idx.reshape(7, 3)
    assert np.all(runs == runs[:, :1])  # held for tau_x steps
    assert sorted(runs[:, 0]) == list(range(7))  # one epoch = a permutation
    # chunking does not change the sequence
    again = SampleStream(7, 3, np.random.default_rng(0)).next(21)[0]
    np.testing.assert_array_equal(idx, again)


def test_digits_split_and_scale():
    d = Digits(test_fraction=0.25).load(np.random.default_rng(0))
    assert d.x_train.shape == (1348, 64) and d.x_test.shape == (449, 64)
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    np.testing.assert_array_equal(d.y_train.argmax(1), d.labels_train)
    s = Digits(scale="standard").load(np.random.default_rng(0))
    np.testing.assert_allclose(s.x_train.mean(0), 0, atol=1e-9)


def test_parity_targets():
    d = Parity(bits=3).load(np.random.default_rng(0))
    assert d.x_train.shape == (8, 3)
    np.testing.assert_array_equal(d.labels_train, d.x_train.sum(1) % 2)
    assert Parity(bits=2, signed=True).load(None).x_train.min() == -1


def test_linear_teacher_is_exactly_linear():
    d = Teacher(model="linear", inputs=6, outputs=2, samples=100).load(np.random.default_rng(3))
    W, *_ = np.linalg.lstsq(d.x_train, d.y_train, rcond=None)
    np.testing.assert_allclose(d.x_test @ W, d.y_test, atol=1e-10)
    c = Teacher(model="mlp", classes=True, outputs=3, samples=300).load(np.random.default_rng(3))
    assert c.is_classification and set(np.unique(c.labels_train)) <= {0, 1, 2}


def test_user_arrays_from_npz_and_h5(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 4, 40)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["X"], f["y"] = X, y.astype(float)
    a = ArrayFile(path=str(tmp_path / "d.npz"), test_fraction=0.25).load(np.random.default_rng(1))
    assert a.n_outputs == 4 and len(a.x_test) == 10
    b = ArrayFile(path=str(tmp_path / "d.h5")).load(np.random.default_rng(1))
    assert not b.is_classification and b.n_outputs == 1


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "file not found"),
    (lambda p: np.savez(p, X=np.zeros((3, 2))), "missing array(s) y"),
    (lambda p: np.savez(p, X=np.zeros((3, 2)), y=np.zeros(4, int)), "X has 3 rows but y has 4"),
])
def test_user_array_errors(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(ParamError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ArrayFile(path=str(path)).load(np.random.default_rng(0))
    with pytest.raises(ParamError, match="expected a .npz or .h5"):
        (tmp_path / "x.csv").write_text("1,2")
        ArrayFile(path=str(tmp_path / "x.csv")).load(np.random.default_rng(0))


def _stream_loop(n, tau, seed, chunks):
    """Reference: the sample stream one step at a time."""
    rng = np.random.default_rng(seed)
    order, pos, held, idx, new = rng.permutation(n), 0, 0, [], []
    for _ in range(sum(chunks)):
        if held == tau:
            held, pos = 0, pos + 1
            if pos == n:
                order, pos = rng.permutation(n), 0
        new.append(held == 0)
        idx.append(order[pos])
        held += 1
    return np.array(idx), np.array(new)


@pytest.mark.parametrize("n,tau", [(7, 3), (5, 1), (3, 10), (100, 4)])
@pytest.mark.parametrize("chunks", [[1] * 50, [2, 5, 1, 13, 40], [3, 3, 7, 11, 200]])
def test_vectorised_stream_equals_step_by_step_loop(n, tau, chunks):
    stream = SampleStream(n, tau, np.random.default_rng(9))
    parts = []
    for c in chunks:  # peek_new foretells each call's flags without moving the stream
        peeked = [stream.peek_new(c), stream.peek_new(c)]
        parts.append(stream.next(c))
        for flags in peeked:
            np.testing.assert_array_equal(flags, parts[-1][1])
    idx, new = _stream_loop(n, tau, 9, chunks)
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), idx)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), new)


def test_digits_read_from_the_shipped_file_equal_load_digits():
    from sklearn.datasets import load_digits

    from devsim.data import digits_arrays
    pixels, labels = digits_arrays()
    bunch = load_digits()
    np.testing.assert_array_equal(pixels, bunch.data)
    np.testing.assert_array_equal(labels, bunch.target)
    assert labels.dtype == np.int64
