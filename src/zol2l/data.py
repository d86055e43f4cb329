"""MNIST and CIFAR-10 loaders (local files only; nothing is ever downloaded).

A data directory may hold, per dataset, either

* ``mnist.npz`` / ``cifar10.npz`` (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``; MNIST
  images ``(N, 28, 28)`` uint8, CIFAR-10 images ``(N, 32, 32, 3)`` HWC RGB uint8), or
* the official files: MNIST idx files (``t10k-images-idx3-ubyte`` etc., optionally ``.gz``,
  also looked for under ``mnist/`` and ``MNIST/raw/``) or the CIFAR-10 python batches
  (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, directly or under
  ``cifar-10-batches-py/``).

The directory comes from the ``data_dir`` argument or else the ``ZOL2L_DATA_DIR`` variable.
"""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch

DatasetName = Literal["mnist", "cifar10"]
Split = Literal["train", "test"]

ENV_VAR = "ZOL2L_DATA_DIR"
DATASETS: tuple[str, ...] = ("mnist", "cifar10")
SPLITS: tuple[str, ...] = ("train", "test")
# Per-image shape as stored in the npz files (MNIST HW, CIFAR HWC).
_NPZ_SHAPE = {"mnist": (28, 28), "cifar10": (32, 32, 3)}
_MNIST_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_SOURCES = {"mnist": "http://yann.lecun.com/exdb/mnist/",
            "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-10 python version)"}


class DataFormatError(ValueError):
    """A data file exists but is truncated, corrupt or holds arrays of the wrong shape."""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """Return the data directory: ``data_dir`` if given, else ``$ZOL2L_DATA_DIR``.

    Raises ``ValueError`` if neither is set and ``FileNotFoundError`` if the directory is missing.
    """
    source = "data_dir argument"
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(ENV_VAR) or None
        source = f"${ENV_VAR}"
        if data_dir is None:
            raise ValueError(
                f"no data directory given: pass --data-dir DIR (data_dir=...) or set {ENV_VAR} to "
                "a folder holding mnist.npz / cifar10.npz or the official MNIST / CIFAR-10 files")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data directory {path} (from {source}) does not exist or is not "
                                "a directory")
    return path


def load_dataset(name: DatasetName, data_dir: str | os.PathLike[str] | None = None,
                 split: Split = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """Load a split as float32 images ``[N, C, H, W]`` in ``[0, 1]`` and int64 labels ``[N]``."""
    x, y = load_dataset_uint8(name, data_dir, split)
    images = torch.from_numpy(x).to(torch.float32).div_(255.0)
    return images, torch.from_numpy(y)


def load_dataset_uint8(name: DatasetName, data_dir: str | os.PathLike[str] | None = None,
                       split: Split = "test") -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`load_dataset` but gives numpy uint8 images ``[N, C, H, W]``, int64 labels."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    root = resolve_data_dir(data_dir)
    npz = root / f"{name}.npz"
    if npz.is_file():
        x, y = _load_npz(npz, name, split)
        x = x[:, None] if name == "mnist" else x.transpose(0, 3, 1, 2)
    elif name == "mnist":
        x, y = _load_mnist_idx(root, split)
    else:
        x, y = _load_cifar_batches(root, split)
    return np.ascontiguousarray(x), y.astype(np.int64)


def _check_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.ndim != 1 or y.shape[0] != n:
        raise DataFormatError(f"{where}: labels have shape {y.shape} but expected ({n},) "
                              "to match the images")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataFormatError(f"{where}: labels have dtype {y.dtype}, expected integers")
    if n and (y.min() < 0 or y.max() > 9):
        raise DataFormatError(f"{where}: labels outside 0..9 (min {y.min()}, max {y.max()})")
    return y


def _load_npz(path: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    xk, yk = f"x_{split}", f"y_{split}"
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (xk, yk) if k not in f.files]
            if missing:
                raise DataFormatError(f"{path.name}: missing key(s) {missing}; it has {f.files}")
            x, y = f[xk], f[yk]
    except DataFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise DataFormatError(f"{path.name}: cannot read ({type(e).__name__}: {e}); the file is "
                              f"truncated or corrupt ({path})") from e
    want = _NPZ_SHAPE[name]
    if x.ndim != 1 + len(want) or tuple(x.shape[1:]) != want:
        raise DataFormatError(f"{path.name}: {xk} has shape {x.shape} but expected "
                              f"(N, {', '.join(map(str, want))})")
    if x.dtype != np.uint8:
        raise DataFormatError(f"{path.name}: {xk} has dtype {x.dtype}, expected uint8")
    return x, _check_labels(y, x.shape[0], f"{path.name}: {yk}")


def _read_maybe_gz(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataFormatError(f"{path.name}: cannot read ({type(e).__name__}: {e}); the file is "
                              f"truncated or corrupt ({path})") from e


def _parse_idx(path: Path, ndim: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """Parse an idx file of unsigned bytes with ``ndim`` dimensions (magic 0x0000 08 ndim)."""
    raw = _read_maybe_gz(path)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path.name}: only {len(raw)} bytes, too short for an idx header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + ndim:
        raise DataFormatError(f"{path.name}: bad idx magic number 0x{magic:08x}, expected "
                              f"0x{0x0800 + ndim:08x} (unsigned byte, {ndim} dimensions)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if dims[1:] != item_shape:
        raise DataFormatError(f"{path.name}: idx dimensions {dims} but expected "
                              f"(N{''.join(f', {d}' for d in item_shape)})")
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DataFormatError(f"{path.name}: holds {len(raw) - header} data bytes but its header "
                              f"{dims} needs {size} (file truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find(root: Path, subdirs: tuple[str, ...], names: tuple[str, ...]) -> Path | None:
    for sub in subdirs:
        for n in names:
            p = root / sub / n
            if p.is_file():
                return p
    return None


def _load_mnist_idx(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    subdirs = (".", "mnist", "MNIST/raw")
    paths = []
    for base in _MNIST_IDX[split]:
        alt = base.replace("-idx", ".idx")  # e.g. t10k-images.idx3-ubyte (common re-packaging)
        p = _find(root, subdirs, (base, base + ".gz", alt, alt + ".gz"))
        if p is None:
            raise FileNotFoundError(_missing_message("mnist", root))
        paths.append(p)
    x = _parse_idx(paths[0], 3, (28, 28))
    y = _parse_idx(paths[1], 1, ())
    return x[:, None], _check_labels(y, x.shape[0], paths[1].name)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR-10 batches: only numpy array/dtype reconstruction is allowed."""

    def find_class(self, module: str, name: str) -> object:
        try:
            from numpy._core import multiarray, numeric
        except ImportError:  # numpy < 2
            from numpy.core import multiarray, numeric  # type: ignore[no-redef]
        allowed = {("multiarray", "_reconstruct"): multiarray._reconstruct,
                   ("multiarray", "scalar"): multiarray.scalar,
                   ("numeric", "_frombuffer"): numeric._frombuffer,
                   ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
        key = (module.rsplit(".", 1)[-1], name)
        if module.startswith("numpy") and key in allowed:
            return allowed[key]
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles from Python 3
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as e:
        raise DataFormatError(
            f"{path.name}: cannot unpickle ({type(e).__name__}: {e}); the file is truncated, "
            f"corrupt or not a CIFAR-10 python batch ({path})") from e
    if not isinstance(d, dict):
        raise DataFormatError(f"{path.name}: expected a dict, got {type(d).__name__}")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DataFormatError(f"{path.name}: missing 'data'/'labels'; keys are {sorted(d)}")
    x = np.asarray(d["data"])
    if x.ndim != 2 or x.shape[1] != 3072 or x.dtype != np.uint8:
        raise DataFormatError(f"{path.name}: data has shape {x.shape} dtype {x.dtype} but "
                              "expected (N, 3072) uint8")
    y = _check_labels(np.asarray(d["labels"]), x.shape[0], f"{path.name}: labels")
    return x.reshape(-1, 3, 32, 32), y


def _load_cifar_batches(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    paths = [_find(root, ("cifar-10-batches-py", "."), (n,)) for n in _CIFAR_BATCHES[split]]
    if any(p is None for p in paths):
        raise FileNotFoundError(_missing_message("cifar10", root))
    parts = [_load_cifar_batch(p) for p in paths]  # type: ignore[arg-type]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _missing_message(name: str, root: Path) -> str:
    if name == "mnist":
        official = ", ".join(f"{a}[.gz], {b}[.gz]" for a, b in _MNIST_IDX.values())
    else:
        official = ("cifar-10-batches-py/{" + ", ".join(_CIFAR_BATCHES["train"])
                    + ", test_batch} (or those files directly in the directory)")
    return (f"no {name} data found in {root}: expected {name}.npz (keys x_train, y_train, x_test, "
            f"y_test) or the official files {official}. Get them from {_SOURCES[name]} and put "
            f"them in {root} (zol2l never downloads anything).")
