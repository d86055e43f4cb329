"""One step of the scale-free ZO-LSTM (:mod:`zol2l.learned.scalefree`).

:class:`~zol2l.optimizers.zo_lstm.LearnedZO` runs this step instead of eq. 2's when its
UpdateRNN is a :class:`~zol2l.learned.scalefree.ScaleFreeUpdateRNN` (a checkpoint whose
config has ``scheme = "scale-free"``, e.g. ``pretrained:general``).  It spends ``q + 3``
queries in ONE oracle call: eq. 1 at the current point (``q + 1``, with ``mu_t`` from the
step size and the measured noise and the QueryRNN's std, eq. 3, Bernoulli-mixed and
normalized), the current point a second time (the evaluation noise) and the last accepted
point again (the success of the last step, judged on the same minibatch).  When
``2 d <= q`` the ``q`` directions become ``q // 2`` central pairs along orthogonal directions
in the basis of the quasi-Newton metric (:mod:`zol2l.learned.metric`; an odd ``q`` queries
``f(x)`` a third time), and the step ``dy`` moves ``x`` by ``A dy``.  The metric replaces the
QueryRNN's diagonal sampling covariance there: its output is not applied, since secants
need every estimate to be the gradient itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from zol2l.estimators import Queries, gaussian_queries, orthogonal_queries
from zol2l.learned.rnn import mix_and_normalize
from zol2l.learned.scalefree import (
    ScaleFreeState,
    ScaleFreeUpdateRNN,
    features,
    normalized_estimate,
    observe,
)
from zol2l.optimizers.base import StepOutput

if TYPE_CHECKING:
    from zol2l.optimizers.zo_lstm import LearnedState, LearnedZO


def scale_free_step(opt: LearnedZO, x: torch.Tensor, state: LearnedState,
                    gen: torch.Generator) -> Queries[StepOutput]:
    """One scale-free step of ``opt`` from ``x[B, d]`` (its own state kept in
    ``state.scale_free``)."""
    rnn = opt.update_rnn
    assert isinstance(rnn, ScaleFreeUpdateRNN)
    const = rnn.constants
    sf = state.scale_free
    if sf is None:
        sf = state.scale_free = ScaleFreeState.initial(x, const, opt.alpha, opt.q)
    extras: dict[str, torch.Tensor] = {}
    std = None
    if opt.sampling == "query":
        assert opt.query_rnn is not None
        raw, sf.query_hidden = opt.query_rnn(sf.prev_n, sf.prev_step, sf.query_hidden)
        std = mix_and_normalize(raw, opt.p_query, gen)
        extras["std_pred"], extras["std"] = raw, std
    guide = opt.guide(state) if opt.sampling == "guided" else None
    mu = sf.mu(const)
    # f(x) again (the evaluation noise), then the accepted point again (the last step's
    # success); an odd q in the quasi-Newton mode repeats f(x) once more to spend q + 3
    metric = sf.metric
    repeats = [x.detach()] * (2 if metric is not None and opt.q % 2 else 1)
    again = torch.stack([*repeats, sf.x_base.detach()], dim=1)
    if metric is None:
        sent = opt.q
        est = yield from gaussian_queries(x.detach(), sent, mu, gen, std=std, guide=guide,
                                          guide_alpha=opt.guide_alpha, extra=again)
    else:
        sent = opt.q // 2
        # no diagonal std here: the secants need the estimate to be the gradient itself
        # (the QueryRNN's std, Bernoulli-mixed, would alternate between two estimators)
        est = yield from orthogonal_queries(x.detach(), sent, mu, gen, metric.basis,
                                            extra=again)
    assert est.values is not None
    fx, grad = est.fx, est.grad
    diffs = est.values[:, 1 : sent + 1] - fx[:, None]
    x_base, r, accepted = observe(sf, fx, est.values[:, -2], est.values[:, -1], x, diffs,
                                  const)
    if metric is not None:
        metric.update(x, grad, sf.noise_rel < const.metric_gate)
    n = normalized_estimate(sf, grad, accepted, const)
    mhat = sf.m / (1.0 - const.beta1 ** (sf.t + 1))
    out, sf.update_hidden = rnn(features(sf, n, mhat, r, const), sf.update_hidden)
    sf.log_sigma = sf.log_sigma + const.vote_scale * torch.tanh(out[1].mean(dim=1))
    direction = out[0] - mhat
    move = direction if metric is None else metric.to_x(direction)
    x_new = x_base + sf.sigma[:, None] * move
    sf.x_base = x_base
    sf.prev_n, sf.prev_step = n.detach(), direction.detach()
    sf.t += 1
    extras["sigma"] = sf.sigma.detach()
    extras["mu"] = mu
    state.prev_grad, state.prev_update = grad.detach(), (x_new - x).detach()
    state.t += 1
    return StepOutput(x_new, fx, grad, extras)
