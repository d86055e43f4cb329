"""The scale-free ZO-LSTM: the paper's coordinatewise RNNs, fed and read scale-free.

The paper's UpdateRNN (eq. 2) reads the raw estimate and writes the raw update, so its steps
are tied to the gradient and parameter scales of its training task.  The scale-free scheme
keeps the architecture of section 3.1 -- a coordinatewise LSTM with weights shared across
coordinates and a state per coordinate for the update, the QueryRNN (eq. 3) for the
sampling std with the test-time Bernoulli mixture, eq. 1 estimates in one oracle call -- and
changes what the networks see and what they emit:

* **inputs** (per coordinate, all invariant to ``f -> a f + b`` with ``a > 0`` and to
  ``x -> s x``): the estimate normalized by its running RMS ``n_t = g_t / sqrt(v_t)``
  (``v_t`` an exponential average of ``g_t^2``, as ZO-ADAM's second moment), its running
  mean ``m_t``, and two per-problem progress features broadcast to every coordinate: the
  squashed relative change of the queried value ``r_t = tanh((f(x_t) - f(x_{t-1})) /
  rms(df))`` and the running success rate of the last steps minus its target;
* **outputs**: a direction residual ``a_t`` and a step-size vote ``b_t`` per coordinate; the
  step is ``x_{t+1} = x_base + sigma_t (-m_t + a_t)`` with ``log sigma`` moved by the
  success rule (below) plus ``tanh(mean_j b_t)``: the network controls the log of the step,
  as VeLO does, and the optimizer adapts ``sigma`` from its own progress as CMA-ES and the
  1/5-th success rule do, so that no learning rate is given;
* **success rule**: a step succeeds when the next queried value is below the accepted one.
  ``log sigma`` grows by ``c (1 - p)`` after a success and shrinks by ``c p`` after a
  failure (equilibrium at success rate ``p``), and a failed step is taken back: the next step
  starts from the last accepted point (``x_base``), so on a deterministic objective the
  accepted values never increase.  Under evaluation noise a comparison counts only when the
  change exceeds ``noise_gate`` standard deviations of a difference of two evaluations
  (measured from the repeated ``f(x)``): on pure noise every success is a coin flip, and
  the rule would otherwise shrink ``sigma`` by ``c (p - 1/2)`` per step until it vanished.
  A run answers its last accepted point, or its start when that point never beat the start
  by more than the same margin (:meth:`ScaleFreeState.answer`);
* **smoothing** ``mu_t = k_mu sigma_t``: tied to the step size instead of a fixed 1e-8, so
  that it follows the parameters' scale; while the measured noise is not small against the
  finite differences ``mu`` grows, up to ``mu_max sigma`` (a smoothing wider than the step:
  the estimate stays above the noise when the steps must be small);
* **quasi-Newton metric** when ``2 d <= q`` (:mod:`zol2l.learned.metric`): central
  differences along whole blocks of orthogonal directions in the coordinates of a basis
  ``A`` learned by BFGS secants, so that the networks work where the problem looks
  well-conditioned (frozen while the noise exceeds ``metric_gate``);
* **QueryRNN** inputs: the previous normalized estimate and the previous step divided by
  ``sigma`` (both O(1) whatever the scales).

Untrained (zero head), the scheme is a hand-designed normalized-momentum method with
success-based step-size adaptation; meta-training learns the residual direction and the
step-size vote.  The constants of the scheme are :class:`SchemeConstants`, stored with the
weights; the reasons behind their values are in ``docs/general.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch

from zol2l.learned.metric import Metric
from zol2l.learned.rnn import CoordinateLSTM, Hidden, RNNConfig


@dataclass(frozen=True)
class SchemeConstants:
    """Fixed constants of the scale-free scheme (see the module docstring).

    Attributes:
        beta1: decay of the running mean of the normalized estimate.
        beta2: decay of the second moment of the raw estimate.
        success_target: the success rate ``p`` at which ``sigma`` is stationary.
        rate: ``c`` of the success rule (log-step change per step).
        mu_ratio: ``k_mu = mu / sigma``.
        sigma0: initial step ``sigma_0 = sigma0 * max(rms(x_0), 1)``.
        vote_scale: the largest log-step change the network's vote can add per step.
        clip: the normalized estimate is clipped to ``[-clip, clip]``.
        path_rate: ``c_s`` of the cumulative path of the normalized estimates (CSA).
        path_weight: ``1 / damping`` of the path-length rule (0: off).
        noise_ratio: ``mu`` grows while the estimated noise exceeds this fraction of the
            finite differences' RMS, else shrinks back.
        mu_adapt: log-change of ``mu_factor`` per step.
        noise_gate: a success or failure moves ``sigma`` only when the change exceeds this
            many standard deviations of a difference of two evaluations (0: always).
        mu_max: the largest ``mu / sigma`` the noise can drive ``mu`` to.
        metric_gate: the quasi-Newton metric (``2 d <= q``) takes a secant while the noise
            is below this fraction of the finite differences' RMS (0: no metric).
    """

    beta1: float = 0.5
    beta2: float = 0.99
    success_target: float = 0.7
    rate: float = 0.1
    mu_ratio: float = 0.01
    sigma0: float = 0.1
    vote_scale: float = 0.5
    clip: float = 5.0
    path_rate: float = 0.1
    path_weight: float = 1.0
    noise_ratio: float = 0.2
    mu_adapt: float = 0.2
    noise_gate: float = 2.0
    mu_max: float = 10.0
    metric_gate: float = 1e-3

    def to_dict(self) -> dict[str, float]:
        """JSON-serializable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SchemeConstants:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown scheme constants {unknown}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in data.items()})


class ScaleFreeUpdateRNN(CoordinateLSTM):
    """The UpdateRNN of the scale-free scheme: 4 scale-free inputs, 2 outputs.

    Inputs ``[n_t, m_t, r_t, s_t - p]`` (each ``[B, d]``, the last two broadcast), outputs
    ``[a_t, b_t]`` (direction residual, step-size vote).  Its head starts at zero
    (``head_init = 0``), so an untrained network is the hand-designed scheme exactly.
    """

    n_inputs = 4
    n_outputs = 2
    kind = "update"

    def __init__(self, config: RNNConfig | None = None, *, seed: int = 0,
                 constants: SchemeConstants | None = None) -> None:
        config = config or RNNConfig(preprocess="none", head_init=0.0, scheme="scale-free")
        if config.scheme != "scale-free":
            raise ValueError("ScaleFreeUpdateRNN needs an RNNConfig with scheme='scale-free'")
        super().__init__(config, seed=seed)
        self.constants = constants or SchemeConstants()

    def forward(self, features: torch.Tensor, hidden: Hidden | None = None
                ) -> tuple[torch.Tensor, Hidden]:
        """``features[4, B, d]`` -> ``(out[2, B, d], hidden)``."""
        return self.run_cell(features, hidden)


@dataclass
class ScaleFreeState:
    """Per-problem state of the scale-free scheme (rows ``B``, dimension ``d``).

    Attributes:
        log_sigma: ``[B]`` log step size.
        v: ``[B, d]`` second moment of the raw estimate.
        m: ``[B, d]`` running mean of the normalized estimate.
        x_base: ``[B, d]`` the last accepted point.
        f_base: ``[B]`` its queried value (NaN before the first step).
        df_sq: ``[B]`` running mean of the squared value changes.
        success: ``[B]`` running success rate.
        prev_n, prev_step: ``[B, d]`` previous normalized estimate and step / sigma (the
            QueryRNN's inputs).
        path: ``[B, d]`` cumulative path of the normalized estimates.
        noise_sq: ``[B]`` estimated evaluation-noise variance.
        noise_rel: ``[B]`` its standard deviation over the last finite differences' RMS.
        log_mu_factor: ``[B]`` log of ``mu / (k_mu sigma)`` (at least 0).
        update_hidden, query_hidden: the LSTMs' states.
        metric: the quasi-Newton metric (``2 d <= q`` only).
        x_start, f_start: ``[B, d]`` the start and ``[B]`` its first queried value.
        t: steps taken.
    """

    log_sigma: torch.Tensor
    v: torch.Tensor
    m: torch.Tensor
    x_base: torch.Tensor
    f_base: torch.Tensor
    df_sq: torch.Tensor
    success: torch.Tensor
    prev_n: torch.Tensor
    prev_step: torch.Tensor
    path: torch.Tensor
    noise_sq: torch.Tensor
    noise_rel: torch.Tensor
    log_mu_factor: torch.Tensor
    update_hidden: Hidden | None = None
    query_hidden: Hidden | None = None
    metric: Metric | None = None
    x_start: torch.Tensor | None = None
    f_start: torch.Tensor | None = None
    t: int = 0

    tensors: ClassVar[tuple[str, ...]] = ("log_sigma", "v", "m", "x_base", "f_base", "df_sq",
                                          "success", "prev_n", "prev_step", "path", "noise_sq",
                                          "noise_rel", "log_mu_factor")

    @classmethod
    def initial(cls, x: torch.Tensor, constants: SchemeConstants, scale: float = 1.0,
                q: int = 0) -> ScaleFreeState:
        """The state at ``x[B, d]``: ``sigma_0 = scale * sigma0 * max(rms(x), 1)``; with the
        quasi-Newton metric when ``2 d <= q`` and ``metric_gate > 0``."""
        rms = x.detach().square().mean(dim=1).sqrt().clamp_min(1.0)
        zeros = torch.zeros_like(x)
        row = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        quasi_newton = constants.metric_gate > 0 and 2 * x.shape[1] <= q
        return cls(
            metric=Metric.initial(x.detach()) if quasi_newton else None,
            x_start=x.detach().clone(), f_start=torch.full_like(row, math.nan),
            log_sigma=(rms * constants.sigma0 * scale).log(), v=zeros.clone(), m=zeros.clone(),
            x_base=x.detach().clone(), f_base=torch.full_like(row, math.nan),
            df_sq=row.clone(), success=torch.full_like(row, constants.success_target),
            prev_n=zeros.clone(), prev_step=zeros.clone(), path=zeros.clone(),
            noise_sq=row.clone(), noise_rel=row.clone(), log_mu_factor=row.clone(),
        )

    def detach(self) -> None:
        """Cut the autograd graph (truncated BPTT boundaries)."""
        for name in self.tensors:
            setattr(self, name, getattr(self, name).detach())
        for name in ("update_hidden", "query_hidden"):
            hidden = getattr(self, name)
            if hidden is not None:
                setattr(self, name, tuple(h.detach() for h in hidden))

    def answer(self, constants: SchemeConstants) -> torch.Tensor:
        """``[B, d]`` the run's answer: the last accepted point, unless its value never
        measurably beat the start's (by more than ``noise_gate`` standard deviations of a
        difference of two evaluations), then the start.  Under evaluation noise a step on a
        plateau is accepted whenever its noisy value happens to be lower, so the accepted
        point can be truly worse than ``x_0``; such a run ends where it began."""
        assert self.x_start is not None and self.f_start is not None
        margin = constants.noise_gate * (2.0 * self.noise_sq).sqrt()
        better = (self.f_start - self.f_base) > margin
        return torch.where(better[:, None], self.x_base, self.x_start).detach()

    @property
    def sigma(self) -> torch.Tensor:
        """``[B]`` the step size."""
        return self.log_sigma.exp()

    def mu(self, constants: SchemeConstants) -> torch.Tensor:
        """``[B]`` this step's smoothing ``k_mu sigma mu_factor``."""
        return (constants.mu_ratio * (self.log_sigma + self.log_mu_factor).exp()).detach()


def observe(state: ScaleFreeState, fx: torch.Tensor, f_again: torch.Tensor,
            f_base: torch.Tensor, x: torch.Tensor, diffs: torch.Tensor,
            constants: SchemeConstants) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Account for the values queried at the start of a step, all in one oracle call.

    ``fx = f(x_t)``, ``f_again`` (``x_t`` queried a second time) and ``f_base`` (the
    accepted point queried again): ``fx - f_base`` decides the success of the last step, free
    of a minibatch's noise (the call shares one minibatch); ``fx - f_again`` measures the
    evaluation noise ``sigma_noise``.  When that noise is not small against the step's finite
    differences ``diffs`` (``[B, q]``), ``mu`` grows (``mu_factor``, up to ``mu_max sigma``),
    else it shrinks back to ``k_mu sigma``.  Updates ``sigma`` by the success rule (gated by
    the noise: a change within ``noise_gate`` standard deviations moves neither ``sigma`` nor
    the success rate, and the step is taken back as any non-improving one) and returns
    ``(x_base, r_t, accepted)``: the point the step starts from (``x_t`` after a success, the
    last accepted point after a failure), the squashed relative change, and whether the last
    step was accepted.
    """
    fx, f_again, f_base = fx.detach(), f_again.detach(), f_base.detach()
    first = torch.isnan(state.f_base)
    if state.f_start is not None:
        state.f_start = torch.where(first, fx, state.f_start)
    change = fx - f_base
    change = torch.where(torch.isfinite(change), change, torch.full_like(change, math.inf))
    success = change < 0
    repeat = fx - f_again
    repeat = torch.where(torch.isfinite(repeat), repeat, torch.zeros_like(repeat))
    state.noise_sq = torch.where(first, 0.5 * repeat.square(),
                                 0.9 * state.noise_sq + 0.05 * repeat.square())
    spread = diffs.detach().square().mean(dim=1).sqrt()
    ratio = state.noise_sq.sqrt() / spread.clamp_min(torch.finfo(fx.dtype).tiny)
    state.noise_rel = ratio.detach()
    grow = torch.where(ratio > constants.noise_ratio, 1.0, -1.0).to(fx.dtype)
    state.log_mu_factor = (state.log_mu_factor + constants.mu_adapt * grow).clamp(
        0.0, math.log(constants.mu_max / constants.mu_ratio))
    finite = torch.isfinite(change)
    sq = torch.where(finite, change.square(), state.df_sq)
    state.df_sq = torch.where(state.df_sq > 0, 0.9 * state.df_sq + 0.1 * sq, sq)
    scale = state.df_sq.sqrt().clamp_min(torch.finfo(fx.dtype).tiny)
    r = torch.tanh(torch.where(finite, change / scale, torch.ones_like(change)))
    won = success.to(fx.dtype)
    c, p = constants.rate, constants.success_target
    informative = change.abs() > constants.noise_gate * (2.0 * state.noise_sq).sqrt()
    move = torch.where(first | ~informative, torch.zeros_like(won), c * (won - p))
    state.log_sigma = state.log_sigma + move
    state.success = torch.where(first | ~informative, state.success,
                                0.8 * state.success + 0.2 * won)
    accepted = success | first
    x_base = torch.where(accepted[:, None], x, state.x_base)
    state.f_base = torch.where(accepted, fx, f_base)
    return x_base, r, accepted


def normalized_estimate(state: ScaleFreeState, grad: torch.Tensor, accepted: torch.Tensor,
                        constants: SchemeConstants) -> torch.Tensor:
    """``n_t = clip(g_t / sqrt(v_t))`` with the bias-corrected second moment (updates ``v``
    and ``m``, and after an ``accepted`` step the path and ``sigma``); invariant to the scale
    of ``g``."""
    b2 = constants.beta2
    state.v = b2 * state.v + (1.0 - b2) * grad.detach().square()
    vhat = state.v / (1.0 - b2 ** (state.t + 1))
    denom = vhat.sqrt()
    floor = denom.mean(dim=1, keepdim=True) * 1e-8 + torch.finfo(grad.dtype).tiny
    n = (grad / (denom + floor)).clamp(-constants.clip, constants.clip)
    b1 = constants.beta1
    state.m = b1 * state.m + (1.0 - b1) * n
    if constants.path_weight > 0:
        # cumulative step-size adaptation on the normalized estimates: the squared path
        # length per coordinate is 1 for independent estimates, more when they agree
        # (only after an accepted step: a step taken back is not on the path, and a run of
        # failures must not grow sigma)
        cs = constants.path_rate
        unit = n / n.square().mean(dim=1, keepdim=True).sqrt().clamp_min(1e-30)
        path = (1.0 - cs) * state.path + math.sqrt(cs * (2.0 - cs)) * unit.detach()
        state.path = torch.where(accepted[:, None], path, state.path)
        length = state.path.square().mean(dim=1)
        grow = cs * constants.path_weight * (length - 1.0)
        state.log_sigma = state.log_sigma + torch.where(accepted, grow, torch.zeros_like(grow))
    return n


def features(state: ScaleFreeState, n: torch.Tensor, mhat: torch.Tensor, r: torch.Tensor,
             constants: SchemeConstants) -> torch.Tensor:
    """The UpdateRNN's inputs ``[4, B, d]`` (``mhat``: the bias-corrected running mean)."""
    rows = torch.stack([r, state.success - constants.success_target])  # [2, B]
    return torch.cat([torch.stack([n, mhat]), rows[:, :, None].expand(-1, -1, n.shape[1])])
