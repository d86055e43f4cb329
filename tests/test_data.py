"""Tests for zol2l.data: every supported format, on small synthetic files, plus error messages."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from zol2l.data import DataFormatError, load_dataset, resolve_data_dir

SHARED_DATA = Path(os.environ.get("ZOL2L_DATA_DIR")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")


def _mnist_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8))


def _cifar_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8))


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = (0x0800 + arr.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def test_mnist_npz(tmp_path: Path) -> None:
    xtr, ytr = _mnist_arrays(12, 1)
    xte, yte = _mnist_arrays(7, 2)
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    x, y = load_dataset("mnist", tmp_path, "test")
    assert x.shape == (7, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == yte.tolist()
    assert torch.equal(x[:, 0], torch.from_numpy(xte).float() / 255)
    x, _ = load_dataset("mnist", str(tmp_path), "train")
    assert x.shape == (12, 1, 28, 28) and 0 <= x.min() and x.max() <= 1


def test_cifar_npz_is_converted_to_chw(tmp_path: Path) -> None:
    xtr, ytr = _cifar_arrays(5)
    np.savez_compressed(tmp_path / "cifar10.npz", x_train=xtr, y_train=ytr, x_test=xtr[:3],
                        y_test=ytr[:3])
    x, y = load_dataset("cifar10", tmp_path, "train")
    assert x.shape == (5, 3, 32, 32)
    # channel 1 (green) of pixel (row 4, col 7) of image 2
    assert x[2, 1, 4, 7] == pytest.approx(xtr[2, 4, 7, 1] / 255)
    assert y.tolist() == ytr.tolist()


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path: Path, gz: bool) -> None:
    xte, yte = _mnist_arrays(9)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", xte, gz)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", yte, gz)
    x, y = load_dataset("mnist", tmp_path, "test")
    assert x.shape == (9, 1, 28, 28)
    assert torch.equal((x[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(xte))
    assert y.tolist() == yte.tolist()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path, "train")


def test_mnist_idx_errors(tmp_path: Path) -> None:
    xte, yte = _mnist_arrays(4)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", xte, False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", yte, False)
    img = tmp_path / "t10k-images-idx3-ubyte"
    raw = img.read_bytes()
    img.write_bytes(raw[:-100])
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", tmp_path)
    img.write_bytes(b"\x00\x00\x08\x01" + raw[4:])
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte: bad idx magic"):
        load_dataset("mnist", tmp_path)
    _write_idx(img, np.zeros((4, 28, 27), np.uint8), False)
    with pytest.raises(DataFormatError, match=r"\(4, 28, 27\) but expected \(N, 28, 28\)"):
        load_dataset("mnist", tmp_path)
    _write_idx(img, xte, False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", yte[:3], False)
    with pytest.raises(DataFormatError, match=r"labels have shape \(3,\) but expected \(4,\)"):
        load_dataset("mnist", tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", yte, True)
    gzp = tmp_path / "t10k-labels-idx1-ubyte.gz"
    gzp.write_bytes(gzp.read_bytes()[:-6])
    with pytest.raises(DataFormatError, match=r"t10k-labels-idx1-ubyte.gz: cannot read"):
        load_dataset("mnist", tmp_path)


def _write_cifar_batch(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    d = {b"batch_label": b"synthetic", b"labels": [int(v) for v in y],
         b"data": x.transpose(0, 3, 1, 2).reshape(len(x), 3072), b"filenames": [b"a.png"] * len(y)}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


@pytest.mark.parametrize("subdir", ["cifar-10-batches-py", "."])
def test_cifar_pickle_batches(tmp_path: Path, subdir: str) -> None:
    folder = tmp_path / subdir
    folder.mkdir(exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x, y = _cifar_arrays(3, seed=i)
        _write_cifar_batch(folder / f"data_batch_{i}", x, y)
        xs.append(x)
        ys.append(y)
    xt, yt = _cifar_arrays(4, seed=9)
    _write_cifar_batch(folder / "test_batch", xt, yt)
    x, y = load_dataset("cifar10", tmp_path, "train")
    assert x.shape == (15, 3, 32, 32)
    expect = torch.from_numpy(np.concatenate(xs)).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(x, expect)
    assert y.tolist() == np.concatenate(ys).tolist()
    x, y = load_dataset("cifar10", tmp_path, "test")
    assert x.shape == (4, 3, 32, 32) and y.tolist() == yt.tolist()


def test_cifar_pickle_errors(tmp_path: Path) -> None:
    xt, yt = _cifar_arrays(4)
    p = tmp_path / "test_batch"
    _write_cifar_batch(p, xt, yt)
    p.write_bytes(p.read_bytes()[:5000])
    with pytest.raises(DataFormatError, match=r"test_batch: cannot unpickle.*truncated"):
        load_dataset("cifar10", tmp_path)
    with open(p, "wb") as f:  # a pickle that would call os.system must be refused
        pickle.dump({b"data": __import__("os").system}, f)
    with pytest.raises(DataFormatError, match=r"refusing to load"):
        load_dataset("cifar10", tmp_path)
    with open(p, "wb") as f:
        pickle.dump({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(DataFormatError, match=r"data has shape \(4, 3000\).*\(N, 3072\)"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data_batch_1.*cs\.toronto\.edu"):
        load_dataset("cifar10", tmp_path, "train")


def test_npz_errors(tmp_path: Path) -> None:
    x, y = _mnist_arrays(5)
    p = tmp_path / "mnist.npz"
    np.savez(p, x_train=x, y_train=y, x_test=x[:, :10, 0], y_test=y)
    with pytest.raises(DataFormatError,
                       match=r"mnist.npz: x_test has shape \(5, 10\) but expected \(N, 28, 28\)"):
        load_dataset("mnist", tmp_path)
    np.savez(p, x_train=x, y_train=y, x_test=x, y_test=y[:4])
    with pytest.raises(DataFormatError, match=r"mnist.npz: y_test.*\(5,\)"):
        load_dataset("mnist", tmp_path)
    np.savez(p, x_train=x, y_train=y)
    with pytest.raises(DataFormatError, match=r"mnist.npz: missing key\(s\) \['x_test'"):
        load_dataset("mnist", tmp_path)
    np.savez(p, x_train=x, y_train=y, x_test=x.astype(np.float32), y_test=y)
    with pytest.raises(DataFormatError, match=r"dtype float32, expected uint8"):
        load_dataset("mnist", tmp_path)
    np.savez(p, x_train=x, y_train=y, x_test=x, y_test=y)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=r"mnist.npz: cannot read.*truncated or corrupt"):
        load_dataset("mnist", tmp_path)
    c = tmp_path / "cifar10.npz"
    xc, yc = _cifar_arrays(2)
    np.savez(c, x_train=xc, y_train=yc, x_test=xc.transpose(0, 3, 1, 2), y_test=yc)
    with pytest.raises(DataFormatError,
                       match=r"x_test has shape \(2, 3, 32, 32\).*\(N, 32, 32, 3\)"):
        load_dataset("cifar10", tmp_path)


def test_missing_dir_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOL2L_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="ZOL2L_DATA_DIR"):
        resolve_data_dir(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("mnist", tmp_path / "nope")
    monkeypatch.setenv("ZOL2L_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    with pytest.raises(FileNotFoundError, match=r"mnist.npz.*t10k-images-idx3-ubyte.*yann\.lecun"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("svhn", tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("mnist", tmp_path, "val")  # type: ignore[arg-type]


@pytest.mark.skipif(not SHARED_DATA.is_dir() and not os.environ.get("CI"),
                    reason="shared/data beside the checkout is absent (in CI it must be there)")
def test_real_shared_data() -> None:
    x, y = load_dataset("mnist", SHARED_DATA, "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert torch.bincount(y, minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958,
                                                        1028, 974, 1009]
    x, y = load_dataset("cifar10", SHARED_DATA, "test")
    assert x.shape == (1000, 3, 32, 32) and y.shape == (1000,)
    assert 0.40 < float(x.mean()) < 0.55 and int(y.min()) == 0 and int(y.max()) == 9
