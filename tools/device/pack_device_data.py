"""Pack MNIST and CIFAR-10 small enough to travel to the GPU machine (run here, once).

Usage (repo root): python tools/device/pack_device_data.py [--src ../shared/data] [--dst .devdata]

The repository copy sent to the GPU machine must stay under 64 MiB, but cifar10.npz is 144 MB.
This writes into ``.devdata/`` (git-ignored; name it in ``carry``):

* ``mnist.npz``: copied byte for byte (sha256 checked against shared/data/README.md);
* ``cifar10_packed.npz``: the 1,000 test images and all labels losslessly, and all 50,000
  training images as JPEG sprites (40 x 25 images of 32 x 32 per JPEG, 4:4:4 chroma, optimised
  Huffman tables). 32 is a multiple of the 8 x 8 DCT block, so no block straddles two images.

Measured on 5,000 training images (size scaled to 50,000; PSNR against the exact pixels):
JPEG 4:4:4 q90 29 MB / 36.1 dB, q93 35 MB / 38.0 dB, q95 40 MB / 39.9 dB, q97 50 MB / 42.9 dB;
4:2:0 is smaller but far worse (q97 38 MB / 34.9 dB); lossless PNG sprites 108 MB, lossless WebP
84 MB, xz of the raw pixels 117 MB: no lossless coding fits. So the script keeps every image and
picks the highest JPEG quality (4:4:4) whose output fits the budget (``--budget-mb`` for the
whole travelling tree: tracked + untracked non-ignored files plus ``.devdata``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
MNIST_SHA256 = "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
CIFAR_SHA256 = "dc4bd2a3b6c37baaeda883ce909612c4318fde40b9ff67f881d1f9c10cde35a4"
ROWS, COLS = 25, 40  # images per sprite: 1,000
QUALITIES = (98, 97, 96, 95, 94, 93, 92, 90, 88, 85, 80)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def to_sprite(imgs: np.ndarray) -> np.ndarray:
    """``(ROWS*COLS, 32, 32, 3)`` -> one ``(ROWS*32, COLS*32, 3)`` image."""
    return imgs.reshape(ROWS, COLS, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(
        ROWS * 32, COLS * 32, 3)


def from_sprite(sprite: np.ndarray) -> np.ndarray:
    return sprite.reshape(ROWS, 32, COLS, 32, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 32, 32, 3)


def encode(x: np.ndarray, quality: int) -> list[bytes]:
    out = []
    for i in range(0, len(x), ROWS * COLS):
        buf = io.BytesIO()
        Image.fromarray(to_sprite(x[i:i + ROWS * COLS])).save(
            buf, "JPEG", quality=quality, subsampling=0, optimize=True)
        out.append(buf.getvalue())
    return out


def decode(blobs: list[bytes]) -> np.ndarray:
    return np.concatenate([from_sprite(np.asarray(Image.open(io.BytesIO(b)).convert("RGB")))
                           for b in blobs])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / mse)


def travelling_tree_bytes(exclude: Path) -> int:
    """Bytes of the files that travel with the working tree, except under ``exclude``."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    total = 0
    for n in filter(None, names):
        p = REPO / n
        if p.is_file() and exclude not in p.resolve().parents:
            total += p.stat().st_size
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--dst", type=Path, default=REPO / ".devdata")
    ap.add_argument("--budget-mb", type=float, default=55.0,
                    help="cap in MB (1e6 bytes) for the whole travelling tree incl. --dst")
    ap.add_argument("--quality", type=int, default=None, help="force a JPEG quality")
    args = ap.parse_args()
    dst = args.dst.resolve()
    dst.mkdir(parents=True, exist_ok=True)

    for name, want in (("mnist.npz", MNIST_SHA256), ("cifar10.npz", CIFAR_SHA256)):
        got = sha256(args.src / name)
        if got != want:
            sys.exit(f"{args.src / name}: sha256 {got} != {want} (README)")
    shutil.copyfile(args.src / "mnist.npz", dst / "mnist.npz")
    with np.load(args.src / "cifar10.npz") as f:
        x_train, y_train = f["x_train"], f["y_train"]
        x_test, y_test = f["x_test"], f["y_test"]
    assert len(x_train) % (ROWS * COLS) == 0

    # fixed overhead: code tree + mnist + lossless test set and labels (+ slack for npz headers)
    lossless = io.BytesIO()
    np.savez_compressed(lossless, x_test=x_test, y_test=y_test, y_train=y_train)
    fixed = travelling_tree_bytes(dst) + (dst / "mnist.npz").stat().st_size + lossless.tell()
    budget = int(args.budget_mb * 1e6) - fixed - 100_000
    print(f"travelling tree {travelling_tree_bytes(dst) / 1e6:.2f} MB, mnist.npz "
          f"{(dst / 'mnist.npz').stat().st_size / 1e6:.2f} MB, lossless test+labels "
          f"{lossless.tell() / 1e6:.2f} MB -> {budget / 1e6:.2f} MB left for the JPEG train set")

    sample = x_train[:5000]
    candidates = [args.quality] if args.quality else list(QUALITIES)
    for q in candidates:
        est = sum(map(len, encode(sample, q))) * len(x_train) / len(sample)
        print(f"  q{q}: estimated {est / 1e6:.1f} MB")
        if args.quality is None and est > budget * 1.02:
            continue
        blobs = encode(x_train, q)
        size = sum(map(len, blobs))
        if args.quality is None and size > budget:
            print(f"  q{q}: actual {size / 1e6:.1f} MB is over budget")
            continue
        break
    else:
        sys.exit("no JPEG quality fits the budget; raise --budget-mb")
    rec = decode(blobs)
    quality_db = psnr(rec, x_train)
    max_err = int(np.abs(rec.astype(np.int16) - x_train).max())
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    out = dst / "cifar10_packed.npz"
    np.savez(out, train_jpeg=np.frombuffer(b"".join(blobs), dtype=np.uint8),
             train_jpeg_offsets=offsets, sprite_grid=np.array([ROWS, COLS], np.int64),
             jpeg_quality=np.int64(q), psnr_db=np.float64(quality_db),
             decoded_sha256=np.array(hashlib.sha256(rec.tobytes()).hexdigest()),
             source_sha256=np.array(CIFAR_SHA256), y_train=y_train, x_test=x_test, y_test=y_test)
    total = sum(p.stat().st_size for p in dst.iterdir() if p.is_file())
    print(f"chose JPEG q{q} 4:4:4: {size / 1e6:.2f} MB for {len(x_train)} training images, "
          f"PSNR {quality_db:.2f} dB, max abs error {max_err}/255")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); {dst} holds {total / 1e6:.2f} MB; "
          f"with the tree {(total + travelling_tree_bytes(dst)) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
