"""The meta-objective of ZO-LSTM (eq. 4 of Ruan et al., 2020) and the authors' variant.

Over a run of ``T`` optimizee steps, with ``theta_t`` the iterate after ``t`` steps and
``Sigma_t = diag(std_t^2)`` the QueryRNN's prediction (eq. 3, before the mixture and the
normalization) used by the step that produced ``theta_t``:

* ``"eq4"``: ``L = sum_t w_t f(theta_t) + lambda sum_t ||Sigma_t - I||_F^2``, ``w_t = t``;
* ``"eq4-log"``: eq. 4 on ``log(f(theta_t) / f(theta_0))`` (the general ZO-LSTM, trained on
  families whose values span many orders of magnitude: every row counts by its relative
  progress, whatever its scale);
* ``"telescoping"`` (the authors' code): ``sum_t t (f(theta_t) - f(theta_{t-1})) + the same
  regularizer``.  Its gradient is ``t_end grad f_end - sum_{t<t_end} grad f_t`` inside a
  truncation: it rewards the truncation's last iterate and *penalizes* the others' progress.

``t`` counts from the start of the run (``1..T``), also inside later truncations.  The loss
is averaged over the ``B`` problems of the batch and divided by the constant
``C = T (T + 1) / 2 = sum_t w_t`` so that its scale is that of one loss value whatever ``T``:
a constant factor, so eq. 4's balance between its two terms is unchanged (Adam is invariant
to it up to ``eps``; it keeps the elementwise meta-gradient clamp meaningful).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

META_LOSSES = ("eq4", "telescoping", "eq4-log")


def normalizer(total_steps: int) -> float:
    """``C = sum_{t=1}^T t``."""
    return total_steps * (total_steps + 1) / 2.0


def relative_log(value: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``log(f / f_0)``, floored at ``log(1e-12)`` (values at or below 0 count as the floor)."""
    ref = reference.detach().abs().clamp_min(torch.finfo(reference.dtype).tiny)
    return torch.log((value / ref).clamp_min(1e-12))


def sigma_penalty(std_pred: torch.Tensor) -> torch.Tensor:
    """``||Sigma - I||_F^2 = sum_j (std_j^2 - 1)^2`` per problem (``[B, d] -> [B]``)."""
    return (std_pred.square() - 1.0).square().sum(dim=1)


def window_loss(
    values: Sequence[torch.Tensor],
    steps: Sequence[int],
    *,
    kind: str = "eq4",
    previous: torch.Tensor | None = None,
    std_preds: Sequence[torch.Tensor] = (),
    lam: float = 0.005,
    total_steps: int | None = None,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """The meta-loss of one truncation.

    Args:
        values: ``f(theta_t)`` (each ``[B]``) for the truncation's iterates.
        steps: their ``t`` (counted from the start of the run, first step = 1).
        kind: ``"eq4"`` or ``"telescoping"``.
        previous: ``f(theta_{t-1})`` before the first value (telescoping only; constant).
        std_preds: the QueryRNN's predicted std of each step (``[B, d]``), if any.
        lam: the regularization weight ``lambda`` of eq. 4 (0.005 in the paper).
        total_steps: ``T`` of the run for the normalizer ``C`` (``None``: no normalization).
        reference: ``f(theta_0)`` per problem (``"eq4-log"`` only; constant).
    """
    if kind not in META_LOSSES:
        raise ValueError(f"meta-loss must be one of {META_LOSSES}, got {kind!r}")
    if len(values) != len(steps) or not values:
        raise ValueError("need one step index per value and at least one value")
    terms = []
    before = previous
    for value, t in zip(values, steps, strict=True):
        if kind == "eq4-log":
            if reference is None:
                raise ValueError("the eq4-log meta-loss needs the initial values")
            terms.append(float(t) * relative_log(value, reference))
        elif kind == "eq4":
            terms.append(float(t) * value)
        else:
            if before is None:
                raise ValueError("the telescoping meta-loss needs the previous value")
            terms.append(float(t) * (value - before))
        before = value
    loss = torch.stack(terms).sum(dim=0)  # [B]
    for std in std_preds:
        loss = loss + lam * sigma_penalty(std).to(loss.dtype)
    loss = loss.mean()
    return loss / normalizer(total_steps) if total_steps else loss


def run_fitness(loss: torch.Tensor, kind: str = "eq4") -> float:
    """The eq. 4-weighted mean ``sum_t t L_t / sum_t t`` of a run's loss history
    ``[T + 1, B]`` (row 0 the initial loss), averaged over the ``B`` rows; for ``"eq4-log"``
    of ``log(L_t / L_0)``.  ``inf`` if any value is not finite (a diverged row).  This is
    the meta-trainer's validation loss and the evolution-strategies fitness."""
    loss = loss.double()
    if kind == "eq4-log":
        loss = relative_log(loss, loss[0])
    w = torch.arange(1, loss.shape[0], dtype=torch.float64)
    weighted = (w[:, None] * loss[1:]).sum(0) / w.sum()
    return float(weighted.mean()) if bool(torch.isfinite(weighted).all()) else math.inf
