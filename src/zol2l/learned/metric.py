"""The quasi-Newton metric of the scale-free ZO-LSTM in low dimension (``2 d <= q``).

When ``q`` covers every coordinate twice, a step can afford central differences along a
whole block of orthogonal directions (:func:`zol2l.estimators.orthogonal_queries`): the
estimate is then the gradient itself on quadratics, and secants of successive estimates
measure curvature.  A diagonal normalization (the UpdateRNN's RMS input, ZO-ADAM's second
moment) cannot undo a rotated ill-conditioning; this metric can, as CMA-ES's covariance does:

* **secants** (BFGS): with ``s = x_t - x_{t-1}`` and ``y = g_t - g_{t-1}`` (estimates mapped
  back to ``x``), the inverse-Hessian estimate ``H`` is updated by BFGS when ``s^T y > 0``,
  started at ``(s^T y / y^T y) I`` on the first pair (Nocedal and Wright, eq. 6.20);
* **noise**: a secant is used only while the measured evaluation noise is below
  ``metric_gate`` times the finite differences' RMS (noisy secants would corrupt ``H``), so
  under noise the metric freezes;
* **scale**: the basis is ``A = (d H / tr H)^{1/2}``, unit mean eigenvalue, so that ``sigma``
  keeps the step's scale and every quantity is invariant to ``f -> a f + b`` and
  ``x -> s x``.

The coordinatewise UpdateRNN and QueryRNN then work in the coordinates ``y`` of
``x = x_base + A y``: the estimates they read are ``A^T grad f`` and their step ``dy`` moves
``x`` by ``A dy``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Metric:
    """Per-problem metric state (rows ``B``, dimension ``d``).

    Attributes:
        basis: ``[B, d, d]`` ``A``, the map from ``y`` to ``x``.
        hinv: ``[B, d, d]`` the BFGS inverse-Hessian estimate (in ``x``'s units).
        started: ``[B]`` whether ``hinv`` has had its initial scaling.
        prev_x, prev_g: ``[B, d]`` the last queried point and its estimate in ``x``.
    """

    basis: torch.Tensor
    hinv: torch.Tensor
    started: torch.Tensor
    prev_x: torch.Tensor | None = None
    prev_g: torch.Tensor | None = None

    @classmethod
    def initial(cls, x: torch.Tensor) -> Metric:
        """The identity metric for ``x[B, d]``."""
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device).expand(
            x.shape[0], -1, -1).clone()
        return cls(basis=eye, hinv=eye.clone(),
                   started=torch.zeros(x.shape[0], dtype=torch.bool, device=x.device))

    def to_x(self, dy: torch.Tensor) -> torch.Tensor:
        """``A dy`` for ``dy[B, d]``."""
        return torch.einsum("bij,bj->bi", self.basis, dy)

    def update(self, x: torch.Tensor, grad_y: torch.Tensor, usable: torch.Tensor) -> None:
        """Take the secant from the last queried point to ``x[B, d]`` with its estimate in
        ``y`` (``grad_y``, ``A^T grad f``); rows where ``usable`` is false keep their
        metric (and still record the point)."""
        x, grad_y = x.detach(), grad_y.detach()
        g = torch.linalg.solve(self.basis.transpose(1, 2), grad_y[:, :, None])[:, :, 0]
        if self.prev_x is not None and self.prev_g is not None:
            self._bfgs(x - self.prev_x, g - self.prev_g, usable)
        self.prev_x, self.prev_g = x, g

    def _bfgs(self, s: torch.Tensor, y: torch.Tensor, usable: torch.Tensor) -> None:
        d = s.shape[1]
        sy = (s * y).sum(dim=1)
        ok = usable & torch.isfinite(sy) & (sy > 1e-12 * s.norm(dim=1) * y.norm(dim=1))
        eye = torch.eye(d, dtype=s.dtype, device=s.device)
        first = ok & ~self.started
        scale = sy / y.square().sum(dim=1).clamp_min(torch.finfo(s.dtype).tiny)
        h = torch.where(first[:, None, None], scale[:, None, None] * eye, self.hinv)
        rho = torch.where(ok, 1.0 / sy.clamp_min(torch.finfo(s.dtype).tiny),
                          torch.zeros_like(sy))[:, None, None]
        left = eye - rho * s[:, :, None] * y[:, None, :]
        new = left @ h @ left.transpose(1, 2) + rho * s[:, :, None] * s[:, None, :]
        new = 0.5 * (new + new.transpose(1, 2))
        ok = ok & torch.isfinite(new).flatten(1).all(dim=1)
        if not bool(ok.any()):
            return
        self.hinv = torch.where(ok[:, None, None], new, self.hinv)
        self.started = self.started | ok
        trace = self.hinv.diagonal(dim1=1, dim2=2).sum(dim=1)
        vals, vecs = torch.linalg.eigh(self.hinv * (d / trace)[:, None, None])
        root = vals.clamp_min(1e-10 * vals[:, -1:]).sqrt()
        basis = (vecs * root[:, None, :]) @ vecs.transpose(1, 2)
        self.basis = torch.where(ok[:, None, None], basis, self.basis)
