"""Target classifiers attacked in the black-box experiments.

The architectures follow Cheng et al. (2019) (the C&W-style CNNs used by Ruan et al. 2020,
appendix A): four unpadded 3x3 conv layers with batch norm, two max-pools and three fully
connected layers with dropout 0.5. Models take images in ``[0, 1]`` (``[N, C, H, W]``) and return
logits ``[N, 10]``; the per-channel input normalisation is built into the model.

Pretrained weights ship as ``src/zol2l/weights/{name}.safetensors`` with a ``{name}.json``
metadata file whose ``sha256`` is checked on load (safetensors only: no pickle).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from zol2l.fileio import sha256_file
from zol2l.modelfiles import first_line

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
TARGETS: tuple[str, ...] = ("mnist", "cifar10")
METADATA_KEYS = ("sha256", "dataset", "recipe", "command", "seed", "epochs", "train_seconds",
                 "device", "test_accuracy", "test_images")

# name -> (in_channels, conv widths (c1, c2), hidden fc width, image side, mean, std)
_SPECS: dict[str, tuple[int, tuple[int, int], int, int, tuple[float, ...], tuple[float, ...]]] = {
    "mnist": (1, (32, 64), 200, 28, (0.1307,), (0.3081,)),
    "cifar10": (3, (64, 128), 256, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


class WeightsError(ValueError):
    """Shipped weights are missing, corrupt or do not match their metadata."""


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class TargetCNN(nn.Module):
    """conv-BN-ReLU x2, maxpool, conv-BN-ReLU x2, maxpool, fc-ReLU-dropout x2, fc -> 10 logits."""

    channels_last = False  # set by :meth:`for_inference`
    weights_sha256: str | None = None  # set by :func:`load_pretrained_target`

    def __init__(self, in_channels: int, widths: tuple[int, int], hidden: int, side: int,
                 mean: tuple[float, ...], std: tuple[float, ...], num_classes: int = 10) -> None:
        super().__init__()
        c1, c2 = widths
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, c1), *_conv_bn_relu(c1, c1), nn.MaxPool2d(2),
            *_conv_bn_relu(c1, c2), *_conv_bn_relu(c2, c2), nn.MaxPool2d(2), nn.Flatten())
        out_side = ((side - 4) // 2 - 4) // 2
        self.flat_features = c2 * out_side * out_side
        self.classifier = nn.Sequential(
            nn.Linear(self.flat_features, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.features(x))

    def for_inference(self) -> TargetCNN:
        """A frozen inference copy: every BatchNorm folded into the convolution before it
        (``w * gamma / sqrt(var + eps)``, bias ``beta - mean * gamma / sqrt(var + eps)``, eval
        statistics) and channels-last activations.  The logits agree with the eval-mode model
        to float32 rounding (~1e-6); the MNIST meta-training runs about 1.5x faster with it
        (docs/decisions.md, "Inference form of the shipped targets")."""
        model = copy.deepcopy(self).eval()
        layers: list[nn.Module] = []
        for layer in model.features:
            if isinstance(layer, nn.BatchNorm2d) and layers and isinstance(layers[-1], nn.Conv2d):
                conv = layers[-1]
                scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                  stride=conv.stride, padding=conv.padding,
                                  dilation=conv.dilation, groups=conv.groups, bias=True)
                with torch.no_grad():
                    fused.weight.copy_(conv.weight * scale[:, None, None, None])
                    bias = layer.bias - layer.running_mean * scale
                    if conv.bias is not None:
                        bias = bias + conv.bias * scale
                    fused.bias.copy_(bias)
                layers[-1] = fused
            else:
                layers.append(layer)
        model.features = nn.Sequential(*layers)
        model.channels_last = True
        model = model.to(memory_format=torch.channels_last)
        for param in model.parameters():
            param.requires_grad_(False)
        return model.eval()


def build_target(name: str) -> TargetCNN:
    """A freshly initialised target network for ``"mnist"`` or ``"cifar10"``."""
    if name not in _SPECS:
        raise ValueError(f"unknown target {name!r}; expected one of {TARGETS}")
    return TargetCNN(*_SPECS[name])


def _train_hint(name: str, path: Path) -> str:
    return (f"train it with: zol2l train-target --dataset {name} --data-dir DATA_DIR "
            f"--out {path}  (writes {path.name} and {path.with_suffix('.json').name})")


def load_pretrained_target(name: str,
                           weights_dir: str | os.PathLike[str] | None = None) -> nn.Module:
    """Load the shipped target ``name`` in eval mode after checking the file's sha256."""
    model = build_target(name)
    wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    path, meta_path = wdir / f"{name}.safetensors", wdir / f"{name}.json"
    if not path.is_file():
        raise WeightsError(f"pretrained weights {path} not found; {_train_hint(name, path)}")
    if not meta_path.is_file():
        raise WeightsError(f"metadata {meta_path} not found (needed to verify {path.name}); "
                           f"{_train_hint(name, path)}")
    try:
        meta = json.loads(meta_path.read_text())
        expected = str(meta["sha256"]).lower()
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"{meta_path.name}: unreadable metadata or no 'sha256' ({e})") from e
    if meta.get("dataset", name) != name:
        raise WeightsError(f"{meta_path.name} describes dataset {meta.get('dataset')!r}, "
                           f"not {name!r}")
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(f"{path.name}: sha256 mismatch (file {actual}, metadata {expected}); "
                           "the weights file is corrupt or was replaced; "
                           f"{_train_hint(name, path)}")
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
        model.load_state_dict(state)
    except Exception as e:  # safetensors raises its own error types
        raise WeightsError(f"{path.name}: cannot load weights into the {name} target ({e})") from e
    fast = model.eval().for_inference()
    fast.weights_sha256 = actual
    return fast


class ExternalTarget(nn.Module):
    """Wraps a loaded TorchScript / torch.export module; ``outputs`` records what it returns.

    ``batch`` is ``(lower, upper)``, the batch sizes the module accepts (``upper`` ``None``:
    unbounded); a static-batch export has ``lower == upper``.  Batches outside that range are
    run in chunks of at most ``upper`` images, the last one padded (with copies of its last
    image) to at least ``lower``; the padding's outputs are dropped.  ``input_shape`` is the
    exported ``(C, H, W)`` (``None`` entries are dynamic; ``None`` for TorchScript)."""

    def __init__(self, module: Callable[[torch.Tensor], torch.Tensor], outputs: str,
                 source: str, batch: tuple[int, int | None] = (0, None),
                 input_shape: tuple[int | None, ...] | None = None) -> None:
        super().__init__()
        self.module = module
        self.outputs = outputs
        self.source = source
        self.batch = batch
        self.input_shape = input_shape
        self.weights_sha256 = sha256_file(source) if Path(source).is_file() else None

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"target {self.source} returned {shape} for input of shape "
                             f"{tuple(x.shape)}; expected [N, num_classes] {self.outputs}")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lower, upper = self.batch
        n = x.shape[0]
        if lower <= n and (upper is None or n <= upper):
            return self._call(x)
        size = n if upper is None else upper
        parts = []
        for chunk in x.split(max(size, 1)):
            short = max(lower - chunk.shape[0], 0)
            padded = torch.cat([chunk, chunk[-1:].expand(short, *chunk.shape[1:])]) \
                if short else chunk
            parts.append(self._call(padded)[: chunk.shape[0]])
        return torch.cat(parts)

    def check_images(self, shape: tuple[int, ...], dataset: str) -> None:
        """Raise a clear error if this target cannot take images ``[N, *shape]``."""
        expected = self.input_shape
        if expected is not None and (len(expected) != len(shape) or any(
                e is not None and e != s for e, s in zip(expected, shape, strict=False))):
            want = ", ".join("*" if e is None else str(e) for e in expected)
            raise ValueError(f"target {self.source} was exported for inputs [N, {want}], but "
                             f"{dataset} images are [N, {', '.join(map(str, shape))}]; export "
                             "it for the dataset's image shape")
        probe = torch.full((1, *shape), 0.5, device=_device_of(self.module))
        try:
            with torch.no_grad():
                self(probe)
        except Exception as e:  # a TorchScript shape error is a RuntimeError with a trace
            raise ValueError(f"target {self.source} fails on {dataset} images of shape "
                             f"[N, {', '.join(map(str, shape))}] ({first_line(e)}); check "
                             "--dataset, or export the target for that input shape") from None

    def train(self, mode: bool = True) -> ExternalTarget:  # exported modules refuse .train()
        self.training = mode
        return self

    def __reduce__(self) -> tuple[Any, tuple[bytes, str, str]]:
        """Pickled as the file's bytes (TorchScript modules do not pickle), so that Ray can
        ship the target to its workers, which check and load them as this process did."""
        return _target_from_bytes, (Path(self.source).read_bytes(), self.outputs, self.source)


def _device_of(module: Any) -> torch.device:
    params = getattr(module, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


def _export_signature(program: Any, source: str
                      ) -> tuple[tuple[int, int | None], tuple[int | None, ...] | None]:
    """The accepted batch range and the ``(C, H, W)`` of an ``ExportedProgram``'s input."""
    inputs = list(program.graph_signature.user_inputs)
    if len(inputs) != 1:
        raise ValueError(f"target {source} takes {len(inputs)} inputs; zol2l passes one image "
                         "batch [N, C, H, W]")
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == inputs[0])
    val = node.meta.get("val")
    if val is None or not hasattr(val, "shape") or len(val.shape) < 1:
        return (0, None), None
    dims = list(val.shape)
    rest = tuple(d if isinstance(d, int) else None for d in dims[1:])
    first = dims[0]
    if isinstance(first, int):
        return (first, first), rest
    bounds = program.range_constraints.get(first.node.expr)
    if bounds is None:
        return (0, None), rest
    try:
        upper: int | None = int(bounds.upper)
    except (TypeError, ValueError, AttributeError, OverflowError):  # sympy's int_oo
        upper = None
    return (int(bounds.lower), upper if upper is None or upper < 2**31 else None), rest


def _target_from_bytes(data: bytes, outputs: str, source: str) -> ExternalTarget:
    """Check, load and wrap a model file's bytes (:mod:`zol2l.modelfiles`)."""
    from zol2l.modelfiles import load_model_bytes

    fmt, loaded = load_model_bytes(data, source)
    if fmt == "torchscript":
        return ExternalTarget(loaded, outputs, source)
    batch, shape = _export_signature(loaded, source)
    return ExternalTarget(loaded.module(), outputs, source, batch=batch, input_shape=shape)


def load_target_file(path: str | os.PathLike[str],
                     outputs: Literal["logits", "log_probs"] = "logits") -> nn.Module:
    """Load an external target: a TorchScript file or a ``torch.export`` (``.pt2``) archive.

    The returned module maps images ``[N, C, H, W]`` in ``[0, 1]`` to ``[N, num_classes]`` scores.
    ``outputs`` says whether the file returns logits or log-probabilities; either is returned as
    is, because the attack applies ``log_softmax``, which leaves log-probabilities unchanged.

    The format is detected from the archive's members before anything is loaded
    (:func:`zol2l.modelfiles.detect_format`).  TorchScript files are programs: loading one
    runs the code stored in it, so load only files you trust.  A ``.pt2`` archive is loaded
    only if none of its weights, constants or sample inputs is a pickle.  A static-batch
    export is run in chunks of its batch size (:class:`ExternalTarget`).
    """
    if outputs not in ("logits", "log_probs"):
        raise ValueError(f"outputs must be 'logits' or 'log_probs', not {outputs!r}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"target file {p} not found")
    return _target_from_bytes(p.read_bytes(), outputs, str(p))


@contextmanager
def full_float32() -> Iterator[None]:
    """Run the body with TF32 off for CUDA convolutions and matmuls, restoring the previous
    flags afterwards.  TF32 rounds to a 10-bit mantissa: that noise swamps the forward
    differences of eq. 1 (``mu = 1e-4`` in float32)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


class Float32Target:
    """A target whose every forward pass runs in :func:`full_float32`; other attributes are
    the wrapped target's."""

    def __init__(self, target: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.inner = target

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with full_float32():
            return self.inner(images)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)


@torch.no_grad()
def accuracy(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
             labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy (fraction in ``[0, 1]``) of ``model`` on ``images`` / ``labels``."""
    if isinstance(model, nn.Module):
        model.eval()
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else images.device
    else:
        device = images.device
    if len(images) == 0:
        raise ValueError("accuracy of an empty image set is undefined")
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model(images[i:i + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == labels[i:i + batch_size].cpu()).sum())
    return correct / len(images)
