"""Train the MNIST / CIFAR-10 target classifiers (``zol2l train-target``).

Recipe: SGD (momentum 0.9, Nesterov, weight decay 5e-4) with a one-cycle learning-rate schedule
(cosine annealing, no momentum cycling), plain cross-entropy. Augmentation runs on tensors on the
training device: CIFAR-10 random crops from a 4-pixel reflect padding plus horizontal flips;
MNIST random shifts of up to 2 pixels (zero padding).

Everything random is seeded: ``torch.manual_seed(seed)`` (initialisation, dropout) and a separate
CPU ``torch.Generator`` (shuffling and augmentation). A checkpoint (model, optimizer, scheduler,
epoch, RNG states as tensors) is written atomically after every epoch next to ``out``
(``out.with_suffix(".ckpt")``) with ``torch.save`` and read back with ``weights_only=True``;
``resume=True`` continues from it exactly (bit for bit on CPU). Final float32 weights go to
``out`` (safetensors) and the metadata to ``out.with_suffix(".json")``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from zol2l.data import DATASETS, load_dataset_uint8
from zol2l.fileio import atomic_write, sha256_file
from zol2l.targets import build_target

DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {"epochs": 12, "batch_size": 256, "lr": 0.1, "shift": 2, "pad_mode": "constant",
              "flip": False},
    "cifar10": {"epochs": 60, "batch_size": 256, "lr": 0.1, "shift": 4, "pad_mode": "reflect",
                "flip": True},
}
WEIGHT_DECAY = 5e-4
MOMENTUM = 0.9
PCT_START = 0.25


def augment(x: torch.Tensor, shift: int, pad_mode: str, offsets: torch.Tensor | None,
            flips: torch.Tensor | None) -> torch.Tensor:
    """Shift and flip a batch: crop ``x`` (float ``[B, C, H, W]``) padded by ``shift`` pixels.

    ``offsets`` (``[B, 2]`` ints in ``[0, 2 * shift]``, row then column) pick each crop;
    ``flips`` (``[B]`` bools) mirror images horizontally. ``None`` skips that step. The random
    draws are made by the caller (on the CPU generator, once per epoch) and live on ``x.device``.
    """
    b, c, h, w = x.shape
    if shift and offsets is not None:
        xp = F.pad(x, (shift, shift, shift, shift), mode=pad_mode)
        rows = offsets[:, 0, None] + torch.arange(h, device=x.device)
        cols = offsets[:, 1, None] + torch.arange(w, device=x.device)
        x = xp[torch.arange(b, device=x.device)[:, None, None, None],
               torch.arange(c, device=x.device)[None, :, None, None],
               rows[:, None, :, None], cols[:, None, None, :]]
    if flips is not None:
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
    return x


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path,
                     metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` as safetensors (library if installed, else a minimal writer)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    try:
        from safetensors.torch import save_file
    except ImportError:  # e.g. a bare GPU machine: the format is simple enough to write directly
        codes = {torch.float32: "F32", torch.int64: "I64"}
        header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
        blobs, pos = [], 0
        for k in sorted(tensors):
            blob = tensors[k].numpy().tobytes()
            header[k] = {"dtype": codes[tensors[k].dtype], "shape": list(tensors[k].shape),
                         "data_offsets": [pos, pos + len(blob)]}
            blobs.append(blob)
            pos += len(blob)
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * (-len(hb) % 8)
        with open(path, "wb") as f:
            f.write(len(hb).to_bytes(8, "little") + hb + b"".join(blobs))
        return
    save_file(tensors, str(path), metadata=metadata)


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file of float32/int64 tensors (library if installed)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raw = path.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        header.pop("__metadata__", None)
        dt = {"F32": torch.float32, "I64": torch.int64}
        return {k: torch.frombuffer(bytearray(raw[8 + n + v["data_offsets"][0]:
                                                  8 + n + v["data_offsets"][1]]),
                                    dtype=dt[v["dtype"]]).reshape(v["shape"])
                for k, v in header.items()}
    return load_file(str(path))


@torch.no_grad()
def _evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, channels_last: bool,
              batch_size: int = 1000) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].float().div_(255)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        correct += (model(xb).argmax(1) == y[i:i + batch_size]).sum()
    return int(correct) / len(x)


def _device_name(dev: torch.device) -> str:
    name = f"cpu, torch {torch.__version__}"
    if dev.type == "cuda":
        name = f"cuda ({torch.cuda.get_device_name(dev)}), torch {torch.__version__}"
    return name


def train_target(dataset: str, data_dir: str | os.PathLike[str] | None,
                 out: str | os.PathLike[str], *, epochs: int | None = None,
                 batch_size: int | None = None, lr: float | None = None, seed: int = 0,
                 resume: bool = False, device: str = "cpu", progress: bool = True,
                 amp: bool = False, channels_last: bool = False,
                 checkpoint: str | os.PathLike[str] | None = None, keep_checkpoint: bool = False,
                 stop_after: int | None = None, command: str | None = None,
                 extra_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a target classifier and write ``out`` (safetensors) and its ``.json`` metadata.

    ``epochs``/``batch_size``/``lr`` default per dataset (MNIST 12/256/0.1, CIFAR-10 60/256/0.1;
    ``lr`` is the one-cycle peak). ``amp`` uses bfloat16 autocast on CUDA (weights stay float32).
    ``stop_after=k`` stops after epoch ``k`` leaving the checkpoint (for split runs) and returns
    ``{"stopped_after_epoch": k}``. The checkpoint is deleted at the end unless
    ``keep_checkpoint``. Seeds the global torch RNG. Returns the metadata dict.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    d = DEFAULTS[dataset]
    epochs = int(epochs if epochs is not None else d["epochs"])
    batch_size = int(batch_size if batch_size is not None else d["batch_size"])
    lr = float(lr if lr is not None else d["lr"])
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
    dev = torch.device(device)
    out = Path(out)
    ckpt_path = Path(checkpoint) if checkpoint is not None else out.with_suffix(".ckpt")
    meta_path = out.with_suffix(".json")
    amp = bool(amp and dev.type == "cuda")

    x_np, y_np = load_dataset_uint8(dataset, data_dir, "train")
    xt_np, yt_np = load_dataset_uint8(dataset, data_dir, "test")
    x_train, y_train = torch.from_numpy(x_np).to(dev), torch.from_numpy(y_np).to(dev)
    x_test, y_test = torch.from_numpy(xt_np).to(dev), torch.from_numpy(yt_np).to(dev)
    n = len(x_train)
    steps = math.ceil(n / batch_size)
    if epochs * steps < 3:
        raise ValueError(f"only {epochs * steps} optimizer steps; the one-cycle schedule "
                         "needs at least 3")
    pct_start = max(PCT_START, 2.0 / (epochs * steps))  # warm-up of at least two steps
    recipe = {"optimizer": "SGD", "momentum": MOMENTUM, "nesterov": True,
              "weight_decay": WEIGHT_DECAY,
              "schedule": f"OneCycleLR(cos, pct_start={pct_start:.4g}, cycle_momentum=False)",
              "peak_lr": lr, "batch_size": batch_size, "loss": "cross_entropy",
              "augmentation": (f"random shift up to {d['shift']} px ({d['pad_mode']} padding)"
                               + (", horizontal flip" if d["flip"] else "")),
              "amp": "bf16 autocast" if amp else "off", "channels_last": channels_last,
              "train_images": n}
    config = {"dataset": dataset, "epochs": epochs, "seed": seed, "recipe": json.dumps(recipe)}

    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_target(dataset).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, nesterov=True,
                          weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps,
                                                pct_start=pct_start, cycle_momentum=False)
    start, elapsed, history = 0, 0.0, []
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint {ckpt_path} to resume from")
        ck = torch.load(ckpt_path, map_location=dev, weights_only=True)
        if ck["config"] != config:
            raise ValueError(f"checkpoint {ckpt_path} was made with {ck['config']}, which differs "
                             f"from this run's {config}; rerun without --resume to start over")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng_cpu"].cpu())
        gen.set_state(ck["rng_shuffle"].cpu())
        if dev.type == "cuda" and ck.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ck["rng_cuda"].cpu(), dev)
        start, elapsed, history = int(ck["epoch"]), float(ck["train_seconds"]), ck["history"]

    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=epochs * steps, initial=start * steps, file=sys.stderr,
                       desc=f"train {dataset}", dynamic_ncols=True, unit="step")
        except ImportError:
            bar = None

    def log(msg: str) -> None:
        (bar.write if bar is not None else print)(msg, file=sys.stderr)

    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    stop = epochs if stop_after is None else min(epochs, max(stop_after, start))
    for epoch in range(start, stop):
        t0 = time.perf_counter()
        model.train()
        # all random draws of the epoch at once: one host-to-device copy, no per-step syncs
        perm = torch.randperm(n, generator=gen).to(dev)
        offsets = torch.randint(0, 2 * d["shift"] + 1, (n, 2), generator=gen).to(dev)
        flips = (torch.rand(n, generator=gen) < 0.5).to(dev) if d["flip"] else None
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        for i in range(steps):
            sl = slice(i * batch_size, (i + 1) * batch_size)
            idx = perm[sl]
            xb = augment(x_train[idx].float().div_(255), d["shift"], d["pad_mode"], offsets[sl],
                         None if flips is None else flips[sl])
            yb = y_train[idx]
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == yb).sum()
            if bar is not None:
                bar.update(1)
        train_loss = float(loss_sum) / n
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss "
                                     f"{train_loss}); try a smaller --lr")
        test_acc = _evaluate(model, x_test, y_test, channels_last)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        secs = time.perf_counter() - t0
        elapsed += secs
        history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 5),
                        "train_accuracy": round(int(correct) / n, 5),
                        "test_accuracy": test_acc, "seconds": round(secs, 2)})
        log(f"{dataset} epoch {epoch + 1}/{epochs}: loss {train_loss:.4f} train acc "
            f"{int(correct) / n:.4f} test acc {test_acc:.4f} ({len(x_test)} images) "
            f"[{secs:.1f}s]")
        ck = {"model": model.state_dict(), "optimizer": opt.state_dict(),
              "scheduler": sched.state_dict(), "epoch": epoch + 1, "config": config,
              "rng_cpu": torch.get_rng_state(), "rng_shuffle": gen.get_state(),
              "rng_cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
              "train_seconds": elapsed, "history": history}
        atomic_write(ckpt_path, lambda p, ck=ck: torch.save(ck, p))
    if bar is not None:
        bar.close()
    if stop < epochs:
        return {"stopped_after_epoch": stop, "checkpoint": str(ckpt_path)}

    state = {k: (v.float() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    # one metadata key only: safetensors orders several keys randomly, changing the sha256
    atomic_write(out, lambda p: save_safetensors(state, p, {"format": "pt"}))
    final = build_target(dataset)  # evaluate what was written, in float32 on the CPU (no TF32)
    final.load_state_dict(load_safetensors(out))
    test_acc = _evaluate(final, x_test.cpu(), y_test.cpu(), channels_last=False)
    meta: dict[str, Any] = {
        "sha256": sha256_file(out), "dataset": dataset, "recipe": recipe,
        "command": command if command is not None else shlex.join(sys.argv), "seed": seed,
        "epochs": epochs, "train_seconds": round(elapsed, 2), "device": _device_name(dev),
        "test_accuracy": test_acc, "test_images": len(x_test),
        "test_accuracy_note": "final weights reloaded from the file, float32 on the CPU",
        "history": history}
    if extra_metadata:
        meta.update(extra_metadata)
    text = json.dumps(meta, indent=2, allow_nan=False) + "\n"
    atomic_write(meta_path, lambda p: Path(p).write_text(text))
    if not keep_checkpoint and ckpt_path.exists():
        ckpt_path.unlink()
    log(f"{dataset}: test accuracy {test_acc:.4f} on {len(x_test)} images; wrote {out} and "
        f"{meta_path}")
    return meta


def _command_line(args: argparse.Namespace) -> str:
    parts = ["zol2l", "train-target", "--dataset", args.dataset, "--out", str(args.out)]
    for flag in ("data_dir", "epochs", "batch_size", "lr"):
        if getattr(args, flag) is not None:
            parts += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    parts += ["--seed", str(args.seed), "--device", args.device]
    parts += [f for f, on in (("--resume", args.resume), ("--amp", args.amp),
                              ("--channels-last", args.channels_last)) if on]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """Handler for ``zol2l train-target``; returns a process exit code."""
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        train_target(args.dataset, args.data_dir, args.out, epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, seed=args.seed, resume=args.resume,
                     device=device, progress=not args.no_progress, amp=args.amp,
                     channels_last=args.channels_last, command=_command_line(args))
    except (ValueError, FileNotFoundError) as e:
        print(f"zol2l: error: train-target: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``zol2l train-target``."""
    p.description = __doc__.split("\n\n")[0] + " " + __doc__.split("\n\n")[1]
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist.npz / cifar10.npz or the official files "
                        "(default: $ZOL2L_DATA_DIR)")
    p.add_argument("--out", required=True, type=Path,
                   help="weights file to write (.safetensors); metadata goes beside it as .json")
    p.add_argument("--epochs", type=int, default=None, help="default: MNIST 12, CIFAR-10 60")
    p.add_argument("--batch-size", type=int, default=None, help="default 256")
    p.add_argument("--lr", type=float, default=None, help="one-cycle peak learning rate (0.1)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint beside --out (OUT.ckpt)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true",
                   help="no progress bar")
    p.set_defaults(func=run)
