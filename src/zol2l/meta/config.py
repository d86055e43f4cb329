"""Settings of a meta-training run (``zol2l meta-train``)."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from zol2l.learned.rnn import SCHEMES
from zol2l.meta.objective import META_LOSSES

STAGES = ("update", "query")
GRADS = ("auto", "autograd", "zo")
QUERY_GRADS = ("exact", "linearized")
#: the authors' Adam learning rates: 1e-3 for stage 1 (UpdateRNN), 5e-3 for stage 2
DEFAULT_LR = {"update": 1e-3, "query": 5e-3}


@dataclass
class MetaConfig:
    """Everything that determines a meta-training run (saved with its checkpoints).

    Attributes:
        task: task family name (:func:`zol2l.tasks.make_task`); ``task_options`` its options.
        stage: ``"update"`` (train the UpdateRNN, standard Gaussian queries) or ``"query"``
            (train the QueryRNN with the UpdateRNN of ``init`` frozen).
        out: output folder.
        init: stage-1 checkpoint (required for ``"query"``; for ``"update"`` a warm start).
        init_alpha: stage ``update``: multiply the UpdateRNN's output by this fixed factor
            (its ``output_scale``, saved with the weights).  With ``init``, training starts
            from the ``init`` optimizer run with update scale ``alpha`` (section 4.3), for
            finetuning on a task whose updates must be smaller (MNIST -> CIFAR-10); without,
            a fresh UpdateRNN starts with steps of that scale (CIFAR-10 from scratch).
        grad: optimizee gradients for the meta-loss: ``"autograd"``, ``"zo"`` (eq. 5) or
            ``"auto"`` (autograd when the task's objective is differentiable).
        query_grad: stage ``query`` with autograd: how the gradient reaches the QueryRNN
            through the queried values ``f(x + mu u)``: ``"exact"`` (back-propagation
            through all ``q`` queries) or ``"linearized"`` (through ``grad f(x)``, the
            first-order form; one backward pass on ``B`` points per step instead of
            ``B * q``; :class:`~zol2l.oracle.Oracle`).
        meta_loss: ``"eq4"`` or ``"telescoping"`` (:mod:`zol2l.meta.objective`).
        epochs, runs_per_epoch: each run is one optimizee run of ``steps`` steps on a batch
            of ``batch`` training instances, unrolled ``unroll`` steps per meta-step.
        lr: Adam learning rate (default :data:`DEFAULT_LR` of the stage).
        q, mu: query directions and smoothing of the optimizee's estimator (task defaults).
        zo_mu: smoothing of the eq. 5 estimator (``grad="zo"``).
        lam: ``lambda`` of eq. 4.
        clip: meta-gradients are clamped elementwise to ``[-clip, clip]`` (authors' code).
        val_fraction: the last fraction of the train ids is held out for validation.
        val_every: validate every this many epochs (and before training).
        val_p_query: the Bernoulli ``P`` used when validating the query stage.
        preprocess, input_scale: RNN input preprocessing (:class:`~zol2l.learned.RNNConfig`);
            ``input_scale=None`` measures it (``1 / median |input|`` on training instances).
        forget_bias: ``None`` (bias-free LSTM, the authors') or the initial value of a learned
            forget-gate bias of the trained RNN (:class:`~zol2l.learned.RNNConfig`).
        meta_grad: ``"bptt"`` (truncated back-propagation, section 3.2) or ``"es"``
            (antithetic evolution strategies over whole runs, :mod:`zol2l.meta.es`).
        es_pairs, es_sigma: antithetic pairs per ES step and their perturbation std.
        scheme: ``"paper"`` (eq. 2 as published) or ``"scale-free"``
            (:mod:`zol2l.learned.scalefree`; pair it with ``meta_loss="eq4-log"``).
        seed: seeds weights, instance batches, directions and minibatches.
        ids: training instance ids (``None``: the task's train split); the last
            ``val_fraction`` of them is held out.
    """

    task: str
    stage: str
    out: str
    init: str | None = None
    init_alpha: float = 1.0
    task_options: dict[str, Any] = field(default_factory=dict)
    grad: str = "auto"
    query_grad: str = "exact"
    meta_loss: str = "eq4"
    epochs: int = 20
    runs_per_epoch: int = 10
    steps: int = 200
    unroll: int = 20
    lr: float | None = None
    batch: int = 8
    q: int | None = None
    mu: float | None = None
    zo_mu: float = 1e-6
    lam: float = 0.005
    clip: float = 1.0
    val_fraction: float = 0.1
    val_every: int = 1
    val_p_query: float = 0.5
    preprocess: str = "scale"
    input_scale: list[float] | None = None
    forget_bias: float | None = None
    meta_grad: str = "bptt"
    es_pairs: int = 8
    es_sigma: float = 0.02
    scheme: str = "paper"
    seed: int = 0
    ids: list[int] | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.grad not in GRADS:
            raise ValueError(f"grad must be one of {GRADS}, got {self.grad!r}")
        if self.query_grad not in QUERY_GRADS:
            raise ValueError(f"query_grad must be one of {QUERY_GRADS}, got {self.query_grad!r}")
        if self.meta_loss not in META_LOSSES:
            raise ValueError(f"meta_loss must be one of {META_LOSSES}, got {self.meta_loss!r}")
        if self.meta_grad not in ("bptt", "es"):
            raise ValueError(f"meta_grad must be 'bptt' or 'es', got {self.meta_grad!r}")
        if int(self.es_pairs) < 1 or not float(self.es_sigma) > 0:
            raise ValueError("es_pairs must be >= 1 and es_sigma positive")
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.stage == "query" and not self.init:
            raise ValueError("stage 'query' needs --init, the stage-1 (update) checkpoint")
        if not float(self.init_alpha) > 0:
            raise ValueError(f"init_alpha must be positive, got {self.init_alpha}")
        if float(self.init_alpha) != 1.0 and self.stage != "update":
            raise ValueError("init_alpha scales the UpdateRNN being trained: it needs "
                             "--stage update")
        for name in ("epochs", "runs_per_epoch", "steps", "unroll", "batch", "val_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.stage]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form."""
        return asdict(self)

    def command(self) -> str:
        """The ``zol2l meta-train`` command line that reproduces this run."""
        parts = ["zol2l", "meta-train", "--task", self.task, "--stage", self.stage,
                 "--out", str(self.out)]
        if self.init:
            parts += ["--init", str(self.init)]
        if float(self.init_alpha) != 1.0:
            parts += ["--init-alpha", repr(float(self.init_alpha))]
        for key, value in sorted(self.task_options.items()):
            parts += ["--task-option", f"{key}={value}"]
        for name in ("grad", "query_grad", "meta_loss", "epochs", "runs_per_epoch", "steps",
                     "unroll", "lr",
                     "batch", "q", "mu", "zo_mu", "lam", "clip", "val_fraction", "val_every",
                     "val_p_query", "preprocess", "forget_bias", "meta_grad", "es_pairs",
                     "es_sigma", "scheme", "seed"):
            value = getattr(self, name)
            if value is not None:
                parts += [f"--{name.replace('_', '-')}", str(value)]
        if self.ids is not None:
            parts += ["--ids", ",".join(str(int(i)) for i in self.ids)]
        if self.input_scale is not None:
            parts += ["--input-scale", ",".join(repr(float(s)) for s in self.input_scale)]
        return shlex.join(parts)
