"""ZO-LSTM, the learned zeroth-order optimizer of Ruan et al. (2020), and its ablations.

Registered optimizers (all spend ``q + 1`` queries per step, one oracle call):

* ``zo-lstm``: QueryRNN sampling (eq. 3, test-time Bernoulli mixture of section 3.1) + the
  UpdateRNN update (eq. 2);
* ``zo-lstm-no-query``: standard Gaussian directions + UpdateRNN;
* ``zo-lstm-no-update``: QueryRNN sampling + the ZO-SGD update ``x - lr g_hat``
  (``lr = delta / d`` unless ``lr`` is given; appendix C.1's "ZO-SGD with the QueryRNN");
* ``zo-lstm-guided-es``: Guided-ES directions (appendix B,
  :class:`~zol2l.optimizers.zo_guided_es.GuidedSampling`) + UpdateRNN.

Weights: ``checkpoint`` is a ``.safetensors`` path or ``pretrained:NAME`` (default
``pretrained:general``, the scale-free optimizer of :mod:`zol2l.learned.scalefree`;
``zo-lstm-no-update`` defaults to ``pretrained:binary-classification``; ``None`` gives
untrained weights seeded by ``init_seed``).  ``pretrained:NAME`` resolves to the stage-2 file
``NAME-query`` when the QueryRNN is needed, else to the stage-1 file ``NAME-update``.
Module instances (``update_rnn=``, ``query_rnn=``) override the checkpoint; the meta-trainer
passes its modules this way and steps the optimizer through :func:`zol2l.loop.advance`.

Gradient paths when stepped with autograd enabled (meta-training, see
:mod:`zol2l.meta.trainer`): the estimate is taken at ``stop_grad(x)`` (no second-derivative
terms, as Andrychowicz et al. 2016), its directions ``u = std * z`` carry the QueryRNN's
graph, the UpdateRNN's input is that estimate and its output is added to ``x`` (identity
path); the QueryRNN's inputs (previous estimate and update) are detached.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from zol2l.estimators import Queries
from zol2l.learned.checkpoint import CheckpointError, load_checkpoint
from zol2l.learned.rnn import Hidden, QueryRNN, UpdateRNN, mix_and_normalize
from zol2l.learned.scalefree import ScaleFreeState, ScaleFreeUpdateRNN
from zol2l.optimizers.base import State, StepOutput, ZOOptimizer
from zol2l.optimizers.registry import register
from zol2l.optimizers.scale_free import scale_free_step
from zol2l.optimizers.zo_guided_es import GuidedSampling

#: the default weights: the general (scale-free) optimizer, meta-trained on a mixture of
#: task families (:mod:`zol2l.tasks.mixture`), for objectives no task-specific file fits
DEFAULT_CHECKPOINT = "pretrained:general"
#: ``zo-lstm-no-update`` keeps a paper checkpoint: its ZO-SGD update needs eq. 2's QueryRNN
PAPER_CHECKPOINT = "pretrained:binary-classification"


@dataclass(kw_only=True)
class LearnedState(State):
    """The ZO-LSTM family's state: the LSTMs' hidden states (``None`` before the first step)
    and, for the scale-free scheme, its :class:`~zol2l.learned.scalefree.ScaleFreeState`."""

    query_hidden: Hidden | None = None
    update_hidden: Hidden | None = None
    scale_free: ScaleFreeState | None = None


class LearnedZO(ZOOptimizer):
    """Shared machinery of the ZO-LSTM family (see the module docstring).

    Args:
        alpha: update scale (section 4.3): ``x_{t+1} = x_t + alpha * UpdateRNN(g_hat)``.
        p_query: ``P`` of the Bernoulli mixture ``X Sigma + (1 - X) I`` (0.5 at test time,
            1 in meta-training).
        checkpoint: ``.safetensors`` path, ``pretrained:NAME`` or ``None`` (untrained).
        checkpoint_sha256: if given, the loaded file must have this sha256.
        update_rnn, query_rnn: module instances (override the checkpoint's).
        init_seed: seed of untrained weights.
        q, mu, lr, delta: see :class:`~zol2l.optimizers.base.ZOOptimizer`; ``lr``/``delta``
            only for ``zo-lstm-no-update``.
    """

    sampling: ClassVar[str] = "query"  # "query", "gaussian" or "guided"
    learned_update: ClassVar[bool] = True
    unrecorded = ("update_rnn", "query_rnn", "init_seed")

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        p_query: float = 0.5,
        checkpoint: str | None = DEFAULT_CHECKPOINT,
        checkpoint_sha256: str | None = None,
        update_rnn: UpdateRNN | None = None,
        query_rnn: QueryRNN | None = None,
        init_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if self.learned_update and (kwargs.get("lr") is not None
                                    or kwargs.get("delta") is not None):
            raise ValueError(f"{self.name} takes no learning rate (the UpdateRNN makes the "
                             "update); scale it with alpha")
        super().__init__(**kwargs)
        if not 0.0 <= float(p_query) <= 1.0:
            raise ValueError(f"p_query must lie in [0, 1], got {p_query}")
        if not float(alpha) > 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.p_query, self.alpha = float(p_query), float(alpha)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.checkpoint_sha256: str | None = None
        needs = {"update"} if self.learned_update else set()
        needs |= {"query"} if self.sampling == "query" else set()
        given = {"update": update_rnn, "query": query_rnn}
        loaded: dict[str, Any] = {}
        if self.checkpoint is not None and any(given[k] is None for k in needs):
            ckpt = load_checkpoint(self.checkpoint, "query" if "query" in needs else "update")
            missing = [k for k in needs if given[k] is None and k not in ckpt.modules]
            if missing:
                raise CheckpointError(
                    f"checkpoint {ckpt.path} has no {missing[0]} module ({self.name} needs "
                    f"{', '.join(sorted(needs))}); a stage-1 'update' file holds only the "
                    "UpdateRNN, use the stage-2 'query' file"
                )
            if checkpoint_sha256 is not None and checkpoint_sha256 != ckpt.metadata["sha256"]:
                raise CheckpointError(f"checkpoint {ckpt.path} has sha256 "
                                      f"{ckpt.metadata['sha256']}, expected {checkpoint_sha256}")
            loaded, self.checkpoint_sha256 = ckpt.modules, ckpt.metadata["sha256"]
        self.update_rnn: UpdateRNN | None = None
        self.query_rnn: QueryRNN | None = None
        if "update" in needs:
            self.update_rnn = _first(update_rnn, loaded.get("update")) or UpdateRNN(seed=init_seed)
        if "query" in needs:
            self.query_rnn = _first(query_rnn, loaded.get("query")) or QueryRNN(seed=init_seed + 1)
        if not loaded and any(given[k] is not None for k in needs):
            self.checkpoint = "<modules>"
        #: the scale-free scheme (``pretrained:general``) or eq. 2 as published
        self.scale_free = isinstance(self.update_rnn, ScaleFreeUpdateRNN)

    def recorded(self, key: str) -> dict[str, Any]:
        """As the base class's, except: no step size when the UpdateRNN makes the update; no
        ``mu`` for the scale-free scheme, which sets it itself (from its step and the noise),
        and the scheme recorded with the checkpoint; the sha256 only of a loaded file."""
        if key in ("lr", "delta") and self.learned_update:
            return {}
        if key == "mu" and self.scale_free:
            return {}
        if key == "checkpoint" and self.scale_free:
            return {"checkpoint": self.checkpoint, "scheme": "scale-free"}
        if key == "checkpoint_sha256" and self.checkpoint_sha256 is None:
            return {}
        return super().recorded(key)

    @classmethod
    def identity(cls, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """The base identity plus the recorded sha256 of the files behind the
        ``checkpoint`` spec (both stages of ``pretrained:NAME``), when there are any: a
        changed file behind the same spec is another unit (with the same seed)."""
        found = super().identity(hyperparameters)
        weights = checkpoint_digests(hyperparameters.get("checkpoint"))
        if weights:
            found["checkpoint_sha256"] = weights
        return found

    # ----------------------------------------------------------------- stepping
    def init_state(self, x: torch.Tensor) -> LearnedState:
        for module in (self.update_rnn, self.query_rnn):
            if module is not None:
                module.to(x.device)  # the RNNs run where the iterate lives (e.g. --device cuda)
        return LearnedState()

    def recommend(self, x: torch.Tensor, state: LearnedState) -> torch.Tensor:  # type: ignore[override]
        """The scale-free scheme returns its last accepted point (its last iterate is a
        proposal that no query has judged yet), or the start when that point never
        measurably beat it (:meth:`~zol2l.learned.scalefree.ScaleFreeState.answer`)."""
        if self.scale_free and state.scale_free is not None:
            assert isinstance(self.update_rnn, ScaleFreeUpdateRNN)
            return state.scale_free.answer(self.update_rnn.constants)
        return x

    def queries_at(self, t: int) -> int:
        """``q + 1``; ``q + 3`` for the scale-free scheme (see
        :mod:`zol2l.optimizers.scale_free`)."""
        return self.q + (3 if self.scale_free else 1)

    def step(self, x: torch.Tensor, state: LearnedState,  # type: ignore[override]
             gen: torch.Generator) -> Queries[StepOutput]:
        if self.scale_free:
            return scale_free_step(self, x, state, gen)
        return super().step(x, state, gen)

    def sampling_std(self, x: torch.Tensor, state: LearnedState,  # type: ignore[override]
                     gen: torch.Generator, extras: dict[str, torch.Tensor]
                     ) -> torch.Tensor | None:
        """The per-coordinate std of this step's directions (eq. 3 + mixture), or ``None``."""
        if self.sampling != "query":
            return None
        assert self.query_rnn is not None
        if state.prev_grad is not None and state.prev_update is not None:
            prev = state.prev_grad, state.prev_update
        else:  # first step: no previous estimate nor update
            prev = torch.zeros_like(x), torch.zeros_like(x)
        raw, state.query_hidden = self.query_rnn(*prev, state.query_hidden)
        std = mix_and_normalize(raw, self.p_query, gen)
        extras["std_pred"], extras["std"] = raw, std
        return std

    def update(self, x: torch.Tensor, grad: torch.Tensor,  # type: ignore[override]
               state: LearnedState) -> torch.Tensor:
        if not self.learned_update:
            return x - self.learning_rate(x.shape[1]) * grad
        assert self.update_rnn is not None
        out, state.update_hidden = self.update_rnn(grad, state.update_hidden)
        return x + self.alpha * out


@register(label="ZO-LSTM", color="tab:red", role="learned")
class ZOLSTM(LearnedZO):
    """ZO-LSTM: QueryRNN sampling + UpdateRNN update."""

    name = "zo-lstm"


@register(label="ZO-LSTM-no-query", color="tab:purple", role="ablation")
class ZOLSTMNoQuery(LearnedZO):
    """ZO-LSTM without the QueryRNN: standard Gaussian directions + UpdateRNN."""

    name = "zo-lstm-no-query"
    sampling = "gaussian"
    absent = ("p_query", "query_rnn")


@register(label="ZO-LSTM-no-update", color="tab:pink", role="ablation")
class ZOLSTMNoUpdate(LearnedZO):
    """ZO-LSTM without the UpdateRNN: QueryRNN sampling + the ZO-SGD update."""

    name = "zo-lstm-no-update"
    learned_update = False
    default_delta = 4.0
    absent = ("alpha", "update_rnn")

    def __init__(self, *, checkpoint: str | None = PAPER_CHECKPOINT, **kwargs: Any) -> None:
        super().__init__(checkpoint=checkpoint, **kwargs)


@register(label="ZO-LSTM-GuidedES", color="tab:gray", role="ablation")
class ZOLSTMGuidedES(GuidedSampling, LearnedZO):
    """Guided-ES sampling (appendix B) + UpdateRNN; ``guide_alpha`` as in ``zo-guided-es``."""

    name = "zo-lstm-guided-es"
    sampling = "guided"
    absent = ("p_query", "query_rnn")


def _first(*modules: Any) -> Any:
    return next((m for m in modules if m is not None), None)


def checkpoint_digests(spec: Any) -> list[str]:
    """The recorded sha256 of the learned-optimizer files behind a ``checkpoint`` spec (both
    stages of ``pretrained:NAME``; ``[]`` without a spec or readable metadata)."""
    if not spec:
        return []
    from zol2l.learned.checkpoint import resolve, sidecar

    found = set()
    for stage in ("update", "query"):
        try:
            found.add(json.loads(sidecar(resolve(spec, stage)).read_text())["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(found)
