"""turboquant.FlatIndex / IvfIndex on NumPy: results against NumPy brute force, recall that
falls with the bits, ids / remove / save-load round trips, agreement with the `tq vsearch` CLI on
the same files, and the refusal of bad arguments and damaged files with errors naming the value.
"""

import numpy as np
import pytest

import turboquant as tq


def gaussian(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def exact_top(x, q, k, metric="ip"):
    if metric == "l2":
        scores = -((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    else:
        scores = q @ x.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def data():
    return gaussian(2000, 64, 1), gaussian(50, 64, 2)


def test_rerank_over_everything_is_exact(data):
    x, q = data
    for metric in ("ip", "l2"):
        index = tq.FlatIndex(64, 4, metric=metric, rerank=len(x))
        index.add(x)
        distances, ids = index.search(q, 10)
        truth = exact_top(x, q, 10, metric)
        np.testing.assert_array_equal(ids, truth)
        best = (q @ x[ids[:, 0]].T).diagonal() if metric == "ip" else \
            ((q - x[ids[:, 0]]) ** 2).sum(axis=1)
        np.testing.assert_allclose(distances[:, 0], best, rtol=1e-4, atol=1e-4)


def test_recall_grows_with_the_bits_and_fast_scan_keeps_it(data):
    x, q = data
    truth = exact_top(x, q, 10)
    got = {}
    for bits in (2, 4):
        index = tq.FlatIndex(64, bits)
        index.add(x)
        got[bits] = recall(index.search(q, 10)[1], truth)
    assert got[2] < got[4]
    assert got[4] > 0.75  # 4-bit mse on 64-d Gaussians: ~0.83 (bench/results/vector_search.md)
    fast = tq.FlatIndex(64, 4, fast_scan=True)
    fast.add(x)
    assert recall(fast.search(q, 10)[1], truth) == pytest.approx(got[4], abs=0.03)


def test_ids_remove_and_padding():
    x = gaussian(5, 32, 3)
    index = tq.FlatIndex(32, 4, rerank=5)
    index.add(x, ids=np.array([10, 20, 30, 40, 50]))
    assert len(index) == index.ntotal == 5
    _, ids = index.search(x[2], 1)
    assert ids.tolist() == [[30]]
    assert index.remove([30, 99]) == 1
    distances, ids = index.search(x[2], 8)
    assert 30 not in ids[0, :4] and ids[0, 4:].tolist() == [-1] * 4
    with pytest.raises(ValueError, match="id 10"):
        index.add(x[:1], ids=[10])


def test_save_load_gives_identical_results(tmp_path, data):
    x, q = data
    index = tq.FlatIndex(64, 3.5, center=True, metric="cosine")
    index.add(x)
    index.save(tmp_path / "flat.tqi")
    again = tq.FlatIndex.load(tmp_path / "flat.tqi")
    for a, b in zip(index.search(q, 20), again.search(q, 20)):
        np.testing.assert_array_equal(a, b)
    assert (again.dim, again.bits, again.metric, again.ntotal) == (64, 3.5, "cosine", 2000)

    ivf = tq.IvfIndex(64, 16, nprobe=4)
    with pytest.raises(RuntimeError, match="train"):
        ivf.add(x)
    ivf.train(x)
    ivf.add(x)
    ivf.save(tmp_path / "ivf.tqi")
    ivf2 = tq.IvfIndex.load(tmp_path / "ivf.tqi")
    for a, b in zip(ivf.search(q, 10), ivf2.search(q, 10)):
        np.testing.assert_array_equal(a, b)


def test_ivf_recall_rises_with_nprobe(data):
    x, q = data
    truth = exact_top(x, q, 10)
    ivf = tq.IvfIndex(64, 16, nprobe=1)
    ivf.train(x)
    ivf.add(x)
    one = recall(ivf.search(q, 10)[1], truth)
    ivf.nprobe = 16
    everything = recall(ivf.search(q, 10)[1], truth)
    assert one < everything and everything > 0.75
    assert repr(ivf).startswith("IvfIndex(dim=64, nlist=16, nprobe=16")


def test_damaged_files_are_value_errors(tmp_path, data):
    x, _ = data
    index = tq.FlatIndex(64, 4)
    index.add(x[:100])
    path = tmp_path / "flat.tqi"
    index.save(path)
    raw = path.read_bytes()
    (tmp_path / "short.tqi").write_bytes(raw[: len(raw) // 2])
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x40
    (tmp_path / "flip.tqi").write_bytes(bytes(flipped))
    for name in ("short.tqi", "flip.tqi"):
        with pytest.raises(ValueError, match="index file"):
            tq.FlatIndex.load(tmp_path / name)
    with pytest.raises(ValueError, match="index file"):
        tq.IvfIndex.load(path)  # a flat index is not an IVF one
    with pytest.raises(FileNotFoundError, match="missing.tqi"):
        tq.FlatIndex.load(tmp_path / "missing.tqi")


def test_bad_arguments_name_the_value(data):
    x, q = data
    with pytest.raises(ValueError, match="dim must be in"):
        tq.FlatIndex(0)
    with pytest.raises(ValueError, match="metric 'dot'"):
        tq.FlatIndex(64, metric="dot")
    with pytest.raises(ValueError, match="fast scan"):
        tq.FlatIndex(64, 3, fast_scan=True)
    index = tq.FlatIndex(64, 4)
    with pytest.raises(ValueError, match="empty"):
        index.search(q, 5)
    with pytest.raises(ValueError, match="x"):
        index.add(x[:, :32])  # dimension mismatch
    with pytest.raises(TypeError, match="float32"):
        index.add(x.astype(np.float64))
    with pytest.raises(TypeError, match="NumPy"):
        index.add(x.tolist())
    index.add(x)
    for k in (0, -1, 1001):
        with pytest.raises(ValueError, match=f"k must be in \\[1, 1000\\], got {k}"):
            index.search(q, k)
    with pytest.raises(ValueError, match="queries"):
        index.search(q[:, :63], 5)
    with pytest.raises(ValueError, match=r"ids must have shape \(3,\)"):
        index.add(x[:3], ids=[1, 2])
    with pytest.raises(ValueError, match="nprobe"):
        tq.IvfIndex(64, 4, nprobe=5)
    with pytest.raises(ValueError, match="threads"):
        index.threads = -1


def test_cli_and_python_agree(tq_cli, tmp_path, data):
    x, q = data
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "q.npy", q)
    tq_cli("vsearch", "build", "-d", tmp_path / "x.npy", "-o", tmp_path / "cli.tqi", "-b", 4,
           "--center", "--fast-scan", "--seed", 7)
    index = tq.FlatIndex(64, 4, center=True, fast_scan=True, seed=7)
    index.add(x)
    index.save(tmp_path / "py.tqi")
    for name in ("cli.tqi", "py.tqi"):
        tq_cli("vsearch", "search", "-i", tmp_path / name, "-q", tmp_path / "q.npy", "-k", 10,
               "-o", tmp_path / f"{name}.ids.npy", "--distances", tmp_path / f"{name}.d.npy")
    distances, ids = index.search(q, 10)
    loaded = tq.FlatIndex.load(tmp_path / "cli.tqi").search(q, 10)
    for name in ("cli.tqi", "py.tqi"):
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.ids.npy"), ids)
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.d.npy"), distances, rtol=1e-6)
    np.testing.assert_array_equal(loaded[1], ids)
