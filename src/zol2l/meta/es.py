"""Evolution-strategies meta-gradients over whole runs (``zol2l meta-train --meta-grad es``).

Truncated back-propagation (section 3.2) sees ``unroll`` steps at a time and is biased
toward greedy optimizers (Wu et al., 2018); its gradients through long unrolls explode
(Metz et al., 2019).  The learned-optimizer work that generalizes (Lange et al.'s learned
evolution strategies, VeLO) meta-trains with evolution strategies instead.  One ES meta-step
here: ``P`` antithetic pairs ``theta +- s eps`` of the trained module's weights, each member
run for the whole horizon (``steps``) on the SAME batch with the same directions (common
random numbers), fitness :func:`~zol2l.meta.objective.run_fitness` (the validation loss of
the trainer), and the gradient estimate ``sum_k (F+_k - F-_k) / (2 s P) eps_k``, clamped
elementwise and applied by the trainer's Adam.  Pairs with a diverged member are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from zol2l.loop import run
from zol2l.meta.objective import run_fitness
from zol2l.tasks.base import Problem

if TYPE_CHECKING:
    from zol2l.meta.trainer import MetaTrainer


def es_step(trainer: MetaTrainer, make_problem: Callable[[], Problem], seed: int
            ) -> dict[str, Any]:
    """One antithetic ES meta-step of ``trainer``'s trained module (see the module doc)."""
    cfg = trainer.cfg
    params = [p for p in trainer.trainable.parameters() if p.requires_grad]
    theta = parameters_to_vector(params).detach().clone()
    gen = torch.Generator().manual_seed(int(seed))
    grad = torch.zeros_like(theta)
    fitnesses: list[float] = []
    used = 0
    first = final = math.nan
    for _ in range(cfg.es_pairs):
        eps = torch.randn(theta.shape, generator=gen, dtype=theta.dtype)
        pair = []
        for sign in (1.0, -1.0):
            vector_to_parameters(theta + sign * cfg.es_sigma * eps, params)
            problem = make_problem()
            with torch.no_grad():
                loss = run(trainer.optimizer(1.0, problem), problem, cfg.steps, seed=seed,
                           nonfinite="inf").loss
            pair.append(run_fitness(loss, cfg.meta_loss))
            first, final = float(loss[0].double().mean()), float(loss[-1].double().mean())
        if all(math.isfinite(f) for f in pair):
            grad += (pair[0] - pair[1]) / (2.0 * cfg.es_sigma) * eps
            fitnesses += pair
            used += 1
    vector_to_parameters(theta, params)
    trainer.adam.zero_grad(set_to_none=True)
    if used:
        grad = (grad / used).clamp(-cfg.clip, cfg.clip)
        offset = 0
        for param in params:
            n = param.numel()
            param.grad = grad[offset:offset + n].view_as(param).to(param.dtype).clone()
            offset += n
        trainer.adam.step()
        trainer.meta_step += 1
    return {"meta_loss": sum(fitnesses) / len(fitnesses) if fitnesses else math.inf,
            "train_initial_loss": first, "train_final_loss": final}
