"""The coordinatewise LSTMs of ZO-LSTM (Ruan et al., 2020, section 3.1 and Fig. 1).

* :class:`UpdateRNN` (eq. 2): input the ZO gradient estimate of eq. 1, output the update
  ``Delta theta_t`` that is *added* to the iterate, ``theta_{t+1} = theta_t + alpha * out``
  (``alpha`` is the update scale of section 4.3, 1 when the optimizer runs on the task it
  was trained on).
* :class:`QueryRNN` (eq. 3): input ``[previous estimate, previous update]``, output ``o``
  giving the per-coordinate standard deviation ``std = 1 + o`` of the query directions,
  i.e. ``Sigma_t = diag(std^2)``.  :func:`mix_and_normalize` applies the test-time mixture
  ``Sigma'_t = X Sigma_t + (1 - X) I`` with ``X ~ Bernoulli(P)`` and rescales ``std`` so that
  ``||std|| = ||ones(d)|| = sqrt(d)`` (the norm of the standard Gaussian's).

Both are a 1-layer LSTM cell (the weights of :class:`torch.nn.LSTMCell`) with 10 hidden
units and a linear head, the weights shared by all coordinates and a hidden state kept per
coordinate.  Batching: the inputs ``[k, B, d]`` of ``B`` problems are flattened to
``[features, B * d]`` columns of ONE cell call (:class:`CoordinateCell`, feature-major) -- no
Python loop over coordinates or problems.  As in the authors' code the
LSTM and the head have no biases and the head's initial weights are multiplied by 0.1
(``head_init``), so an untrained UpdateRNN makes small updates and an untrained QueryRNN
predicts ``std ~= 1`` (standard Gaussian sampling).

Input preprocessing (``RNNConfig.preprocess``):

* ``"scale"`` (default): the raw input times a fixed ``input_scale`` stored with the
  weights; the meta-trainer measures ``1 / median |input|`` on training instances (binary
  classification: estimates ~5e-2, scale ~19).  Algebraically this is the raw-input LSTM
  with its input weights rescaled, but meta-training starts with O(1) pre-activations
  whatever the task's gradient scale; the map stays linear-ish for small inputs, so near an
  optimum the update shrinks with the estimate.
* ``"none"``: the authors' raw inputs.
* ``"logsign"``: Andrychowicz et al. (2016): ``(log|x| / p, sign x)`` if ``|x| >= e^-p``
  else ``(-1, e^p x)``, ``p = 10``.

Forget-gate bias (``RNNConfig.forget_bias``, ``zol2l meta-train --forget-bias``).  Without
biases the forget gate is ``sigmoid(W x + U h)``, about 0.5 for the small inputs near an
optimum, so the cell forgets half of its state every step.  A learned bias on the forget gate
alone (starting at ``b``: ``sigmoid(3) = 0.95``, a memory of ~20 steps) lets the UpdateRNN
average noisy estimates over many steps and keeps the property that a zero input from a zero
state gives a zero update.  The binary-classification checkpoint has it (``b = 3``); the
attack checkpoints keep the bias-free LSTM.

The measurements behind both choices, with their commands and result files, are in
``docs/decisions.md`` ("Meta-training of the paper's ZO-LSTM").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn

Hidden = tuple[torch.Tensor, torch.Tensor]
PREPROCESS = ("scale", "logsign", "none")
SCHEMES = ("paper", "scale-free")


@dataclass(frozen=True)
class RNNConfig:
    """Architecture and preprocessing of a coordinatewise LSTM (stored with its weights).

    Attributes:
        hidden: hidden units of the LSTM (10 in the paper).
        preprocess: ``"scale"``, ``"logsign"`` or ``"none"`` (see the module docstring).
        input_scale: multiplies the raw inputs for ``"scale"``: one factor per input (the
            QueryRNN has two: estimate and update) or one for all.
        logsign_p: ``p`` of the log/sign preprocessing.
        head_init: factor applied to the head's initial weights (0.1 as the authors).
        output_scale: fixed factor on the head's output (1 unless set by ``zol2l meta-train
            --init-alpha``: a warm start scaled for finetuning, or a fresh UpdateRNN whose
            steps must start small, as on CIFAR-10).  A fixed factor rather than
            scaled head weights, because Adam's steps do not shrink with the weights: a
            head scaled by 0.01 takes 100x larger relative steps and diverges in one run.
        forget_bias: ``None`` (the authors' bias-free LSTM) or the initial value of a learned
            bias on the forget gate ONLY (see the module docstring, "Forget-gate bias").
        scheme: ``"paper"`` (eq. 2 as published: the update is the head's output) or
            ``"scale-free"`` (:mod:`zol2l.learned.scalefree`: scale-free inputs, a
            direction and a step-size vote, the step size adapted by the optimizer).
    """

    hidden: int = 10
    preprocess: str = "scale"
    input_scale: tuple[float, ...] = (1.0,)
    logsign_p: float = 10.0
    head_init: float = 0.1
    output_scale: float = 1.0
    forget_bias: float | None = None
    scheme: str = "paper"

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {PREPROCESS}, got {self.preprocess!r}")
        if int(self.hidden) < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        scales = self.input_scale
        if isinstance(scales, int | float):
            scales = (scales,)
        object.__setattr__(self, "input_scale", tuple(float(s) for s in scales))
        if not self.input_scale or not all(math.isfinite(s) and s > 0 for s in self.input_scale):
            raise ValueError(f"input_scale must be positive and finite, got {self.input_scale}")
        if not (math.isfinite(self.output_scale) and self.output_scale > 0):
            raise ValueError(f"output_scale must be positive and finite, got {self.output_scale}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.forget_bias is not None and not math.isfinite(self.forget_bias):
            raise ValueError(f"forget_bias must be finite or None, got {self.forget_bias}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form."""
        return {**asdict(self), "input_scale": list(self.input_scale)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RNNConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        return cls(**data)


def preprocess(inputs: torch.Tensor, config: RNNConfig) -> torch.Tensor:
    """Map raw inputs ``[k, N]`` (feature-major) to LSTM features ``[k, N]`` or ``[2k, N]``."""
    if config.preprocess == "none":
        return inputs
    if config.preprocess == "scale":
        scale = config.input_scale
        return inputs * (scale[0] if len(scale) == 1 else inputs.new_tensor(scale)[:, None])
    p = config.logsign_p
    big = inputs.abs() >= math.exp(-p)
    log_part = torch.where(big, inputs.abs().clamp_min(math.exp(-p)).log() / p, -1.0)
    sign_part = torch.where(big, torch.sign(inputs), math.exp(p) * inputs)
    return torch.cat([log_part, sign_part], dim=0)


class CoordinateCell(nn.LSTMCell):
    """A bias-free :class:`torch.nn.LSTMCell` (same weights and gate order i, f, g, o) that
    runs in a feature-major layout: inputs ``[k, N]``, state ``(h, c)`` of ``[H, N]``.

    With ``N = B * d`` rows of only ``H = 10`` units, the row-major ``LSTMCell`` spends its
    time in strided gate slices (``[N, 4H]`` chunked along the short axis) and in thin
    matrix products; here every gate is a contiguous ``[H, N]`` block and the products are
    ``[4H, H] @ [H, N]``: 2.3x to 4x faster on the MNIST attack's 15,680 rows, one CPU
    thread (1.8 ms vs 6.7 ms per call in ``bench/results/cell.json``, ``bench/bench_cell.py``),
    the same numbers up to float rounding.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, bias=False)

    def forward(self, inputs: torch.Tensor, hidden: Hidden,  # type: ignore[override]
                forget_bias: torch.Tensor | None = None) -> Hidden:
        """``inputs[k, N]``, ``(h, c)[H, N]`` -> the next ``(h, c)``."""
        h, c = hidden
        hsize = self.hidden_size
        gates = torch.addmm(self.weight_ih @ inputs, self.weight_hh, h)  # [4H, N]
        i = gates[:hsize].sigmoid()
        f = gates[hsize : 2 * hsize]
        f = (f if forget_bias is None else f + forget_bias[:, None]).sigmoid()
        g = gates[2 * hsize : 3 * hsize].tanh()
        o = gates[3 * hsize :].sigmoid()
        c = torch.addcmul(f * c, i, g)
        return o * c.tanh(), c


class CoordinateLSTM(nn.Module):
    """A coordinatewise LSTM + linear head, batched over ``B * d`` rows.

    Args:
        config: architecture (default :class:`RNNConfig`).
        seed: seeds the initial weights (independent of the global torch RNG).
    """

    n_inputs: ClassVar[int] = 1
    n_outputs: ClassVar[int] = 1
    kind: ClassVar[str] = ""

    def __init__(self, config: RNNConfig | None = None, *, seed: int = 0) -> None:
        super().__init__()
        self.config = config or RNNConfig()
        if len(self.config.input_scale) not in (1, self.n_inputs):
            raise ValueError(f"{type(self).__name__} has {self.n_inputs} inputs, got "
                             f"{len(self.config.input_scale)} input scales")
        features = self.n_inputs * (2 if self.config.preprocess == "logsign" else 1)
        self.cell = CoordinateCell(features, self.config.hidden)
        self.head = nn.Linear(self.config.hidden, self.n_outputs, bias=False)
        if self.config.forget_bias is not None:
            self.forget_bias = nn.Parameter(torch.empty(self.config.hidden))
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int = 0) -> None:
        """PyTorch's default ``U(-1/sqrt(H), 1/sqrt(H))`` init, seeded; head times ``head_init``."""
        gen = torch.Generator().manual_seed(int(seed))
        bound = 1.0 / math.sqrt(self.config.hidden)
        with torch.no_grad():
            for param in self.cell.parameters():
                param.uniform_(-bound, bound, generator=gen)
            self.head.weight.uniform_(-bound, bound, generator=gen)
            self.head.weight.mul_(self.config.head_init)
            if self.config.forget_bias is not None:
                self.forget_bias.fill_(self.config.forget_bias)

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype (float32 unless converted)."""
        return self.head.weight.dtype

    def init_hidden(self, rows: int, dim: int, device: torch.device | str = "cpu") -> Hidden:
        """Zero ``(h, c)`` for ``rows`` problems of dimension ``dim`` (``[H, rows * dim]``)."""
        shape = (self.config.hidden, rows * dim)
        zeros = torch.zeros(shape, dtype=self.dtype, device=device)
        return zeros, zeros.clone()

    def run_cell(self, inputs: torch.Tensor, hidden: Hidden | None) -> tuple[torch.Tensor, Hidden]:
        """``inputs[k, B, d]`` -> ``(out[B, d], (h, c))`` in one cell call for all ``B * d``
        coordinates (feature-major, see :class:`CoordinateCell`).

        The output has the dtype of ``inputs``; the LSTM runs in its parameters' dtype.
        """
        k, nprob, dim = inputs.shape
        if k != self.n_inputs:
            raise ValueError(f"{type(self).__name__} takes {self.n_inputs} inputs, got {k}")
        flat = preprocess(inputs.reshape(k, nprob * dim), self.config).to(self.dtype)
        if hidden is None:
            hidden = self.init_hidden(nprob, dim, inputs.device)
        bias = self.forget_bias if self.config.forget_bias is not None else None
        h, c = self.cell(flat, hidden, bias)
        out = self.head.weight @ h  # [n_outputs, N]
        if self.config.output_scale != 1.0:
            out = out * self.config.output_scale
        shape = (nprob, dim) if self.n_outputs == 1 else (self.n_outputs, nprob, dim)
        return out.reshape(shape).to(inputs.dtype), (h, c)


class UpdateRNN(CoordinateLSTM):
    """Eq. 2: ``Delta theta_t = UpdateRNN(g_hat_t)``, added to the iterate."""

    n_inputs = 1
    kind = "update"

    def forward(self, grad: torch.Tensor, hidden: Hidden | None = None
                ) -> tuple[torch.Tensor, Hidden]:
        """``grad[B, d]`` -> ``(update[B, d], hidden)``."""
        return self.run_cell(grad[None], hidden)


class QueryRNN(CoordinateLSTM):
    """Eq. 3: ``o_t = QueryRNN([g_hat_{t-1}, Delta theta_{t-1}])``, ``std_t = 1 + o_t``."""

    n_inputs = 2
    kind = "query"

    def forward(self, prev_grad: torch.Tensor, prev_update: torch.Tensor,
                hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """``[B, d]`` previous estimate and update -> ``(std[B, d], hidden)`` with
        ``std = 1 + o`` (not yet mixed nor normalized; may be negative, see
        :func:`mix_and_normalize`)."""
        out, hidden = self.run_cell(torch.stack([prev_grad, prev_update]), hidden)
        return 1.0 + out, hidden


def mix_and_normalize(std: torch.Tensor, p_query: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """The sampling std actually used: section 3.1's ``Sigma' = X Sigma + (1 - X) I``.

    ``X ~ Bernoulli(p_query)`` is drawn once per call (one iteration) per problem (row), shared
    by all the directions of that iteration; nothing is drawn when ``p_query`` is 0 or 1.
    Directions are ``u = |std'| z`` (the predicted quantity is a standard deviation, its
    square the variance), and ``|std'|`` is rescaled per row so that its norm equals
    ``||ones(d)|| = sqrt(d)``: the expected ``||u||^2`` is that of standard Gaussian sampling.
    Gradients flow through the predicted ``std`` (reparameterization, section 3.3).
    """
    if not 0.0 <= p_query <= 1.0:
        raise ValueError(f"p_query must lie in [0, 1], got {p_query}")
    nprob, dim = std.shape
    std = std.abs()
    if p_query < 1.0:
        if p_query == 0.0:
            keep = torch.zeros(nprob, 1, dtype=std.dtype, device=std.device)
        else:
            draw = torch.rand(nprob, 1, generator=generator, device=std.device)
            keep = (draw < p_query).to(std.dtype)
        std = keep * std + (1.0 - keep) * torch.ones_like(std)
    norm = std.norm(dim=1, keepdim=True).clamp_min(torch.finfo(std.dtype).tiny)
    return std * (math.sqrt(dim) / norm)
