"""Meta-training of ZO-LSTM by truncated BPTT (Ruan et al., 2020, sections 3.2-3.3).

Each *run* draws ``batch`` training instances (``TaskFamily.problem``: ``B`` rows) and runs
the learned optimizer on them for ``steps`` (200) steps through the ONE loop of the codebase,
:func:`zol2l.loop.advance` with a differentiable
:class:`~zol2l.oracle.Oracle`; every ``unroll`` (20) steps the meta-loss of that truncation
(:mod:`zol2l.meta.objective`, eq. 4 by default) is back-propagated, the meta-gradients are
clamped elementwise to ``[-clip, clip]`` (the authors' code) and Adam takes a step; then the
iterate and the hidden states are detached and carried over.

Stages (section 3.3): ``update`` trains the UpdateRNN with standard Gaussian queries;
``query`` loads the stage-1 UpdateRNN, freezes it (``requires_grad=False``: it stays bitwise
unchanged, gradients flow *through* it, not into it) and trains the QueryRNN with ``P = 1``.

The truncation length, the meta-loss and their measurements are in ``docs/decisions.md``;
``--meta-grad es`` replaces back-propagation by evolution strategies (:mod:`zol2l.meta.es`).

Gradient paths (``theta_{t+1} = theta_t + UpdateRNN(g_hat_t)``):

* the meta-loss values ``f(theta_t)``: autograd through the task's
  ``differentiable_objective`` (``grad="autograd"``), or the eq. 5 coordinatewise estimate
  (``grad="zo"``, :func:`zol2l.estimators.zo_value`, ``2d + 1`` extra queries per step);
  each is measured on a minibatch drawn after the step (``problem.next_iteration(t + 1)``),
  independent of the one the step's estimate used;
* ``theta_{t+1} -> theta_t``: identity; ``-> UpdateRNN`` weights and its hidden-state
  chain (within the truncation);
* the estimate ``g_hat_t`` is taken at ``stop_grad(theta_t)``: its dependence on
  ``theta_t`` (second-derivative terms) is dropped, as Andrychowicz et al. (2016);
* stage 2: ``u = std_t * z`` (reparameterization) carries gradients to ``std_t`` and the
  QueryRNN through the factor ``u`` of eq. 1 and, with autograd, through
  ``f(theta_t + mu u)`` (the oracle keeps its graph; ``query_grad="linearized"`` takes
  that path through ``grad f(theta_t)`` instead, its first-order form); with
  ``grad="zo"`` the task's values are black-box and only the factor ``u`` carries
  gradient (half of it, to first order);
  the QueryRNN's inputs (previous estimate and update) are detached.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from zol2l.estimators import zo_value
from zol2l.learned.checkpoint import load_checkpoint
from zol2l.learned.rnn import CoordinateLSTM, QueryRNN, RNNConfig, UpdateRNN
from zol2l.learned.scalefree import ScaleFreeUpdateRNN
from zol2l.loop import advance, run
from zol2l.meta.config import MetaConfig
from zol2l.meta.es import es_step
from zol2l.meta.objective import run_fitness, window_loss
from zol2l.meta.state import TrainerFiles, Window, derive_seed
from zol2l.optimizers.base import State
from zol2l.optimizers.zo_lstm import ZOLSTM, LearnedZO, ZOLSTMNoQuery
from zol2l.oracle import Oracle
from zol2l.tasks import make_task
from zol2l.tasks.base import Problem


class MetaTrainer:
    """Meta-train one stage of ZO-LSTM (see the module docstring).

    Args:
        config: the run's settings.
        progress: show a tqdm progress bar on stderr.
        resume: continue the run saved in ``config.out``.
    """

    def __init__(self, config: MetaConfig, *, progress: bool = True, resume: bool = False
                 ) -> None:
        self.cfg = config
        self.progress = progress
        self.task = make_task(config.task, **config.task_options)
        ids = ([int(i) for i in config.ids] if config.ids is not None
               else list(self.task.instance_ids("train")))
        nval = max(1, round(len(ids) * config.val_fraction))
        if nval >= len(ids):
            raise ValueError(f"{len(ids)} train instances: too few to hold out {nval}")
        self.train_ids, self.val_ids = ids[:-nval], ids[-nval:]
        self.q = config.q or getattr(self.task, "default_q", 20)
        self.files = TrainerFiles(Path(config.out), config)
        self.grad = self._resolve_grad()
        self.init_sha256: str | None = None
        self.update_rnn: UpdateRNN
        self.query_rnn: QueryRNN | None = None
        saved = self.files.load_state() if resume else None
        if not resume:
            self.files.check_fresh()
        self._build_modules(saved)
        self.trainable: CoordinateLSTM = (
            self.update_rnn if config.stage == "update" else self.query_rnn)  # type: ignore
        self.adam = torch.optim.Adam(self.trainable.parameters(), lr=config.lr)
        self.done, self.meta_step, self.elapsed = 0, 0, 0.0
        self.log: list[dict[str, Any]] = []
        self.best_val, self.best_state = math.inf, self._weights()
        self.last_val = math.inf
        if saved is not None:
            self._restore(saved)

    # ------------------------------------------------------------------ setup
    def _resolve_grad(self) -> str:
        if self.cfg.grad != "auto":
            return self.cfg.grad
        problem = self.task.problem(self.train_ids[:1], seed=self.cfg.seed)
        x = problem.x0.clone().requires_grad_(True)
        problem.next_iteration(0)
        try:
            value = problem.differentiable_objective(x[:, None, :])
        except (RuntimeError, TypeError, NotImplementedError):
            return "zo"
        return "autograd" if value.requires_grad else "zo"

    def _build_modules(self, saved: dict[str, Any] | None) -> None:
        cfg = self.cfg
        kind = UpdateRNN if cfg.stage == "update" else QueryRNN
        warm: UpdateRNN | None = None
        if cfg.init:
            ckpt = load_checkpoint(cfg.init, "update")
            if "update" not in ckpt.modules:
                raise ValueError(f"--init {cfg.init} holds no UpdateRNN")
            warm, self.init_sha256 = ckpt.modules["update"], ckpt.metadata["sha256"]  # type: ignore
            if saved is not None and saved["init_sha256"] != self.init_sha256:
                raise ValueError(f"--init {cfg.init} changed since the run started (sha256)")
        if cfg.stage == "query":
            assert warm is not None
            self.update_rnn = warm.requires_grad_(False)  # frozen: bitwise unchanged
        if saved is not None:
            config = RNNConfig.from_dict(json.loads(saved["rnn_config"]))
        elif cfg.scheme == "scale-free" and not (cfg.stage == "update" and warm is not None):
            # scale-free inputs need no measured scale; both heads start at zero, so that
            # training starts from the hand-designed scheme with standard Gaussian queries
            config = RNNConfig(preprocess="none", forget_bias=cfg.forget_bias, head_init=0.0,
                               scheme="scale-free" if cfg.stage == "update" else "paper")
        elif cfg.stage == "update" and warm is not None:  # --init-alpha scales its output
            config = replace(warm.config,
                             output_scale=warm.config.output_scale * float(cfg.init_alpha))
        else:
            scale: list[float] = [1.0]
            if cfg.preprocess == "scale":
                if cfg.stage == "update":  # a provisional untrained UpdateRNN to measure with
                    self.update_rnn = UpdateRNN(RNNConfig(
                        preprocess="none", output_scale=float(cfg.init_alpha)), seed=cfg.seed)
                scale = cfg.input_scale or self.measure_input_scale(kind.n_inputs)
            config = RNNConfig(preprocess=cfg.preprocess, input_scale=tuple(scale),
                               forget_bias=cfg.forget_bias,
                               output_scale=float(cfg.init_alpha) if cfg.stage == "update"
                               else 1.0)
        if config.scheme == "scale-free":
            kind = ScaleFreeUpdateRNN
        trained = kind(config, seed=cfg.seed + (cfg.stage == "query"))
        if cfg.stage == "update" and warm is not None and saved is None:
            trained.load_state_dict(warm.state_dict())
        if cfg.stage == "update":
            self.update_rnn = trained  # type: ignore[assignment]
        else:
            self.query_rnn = trained  # type: ignore[assignment]

    def measure_input_scale(self, n_inputs: int) -> list[float]:
        """``1 / median |input|`` over the first ``unroll`` steps of the current optimizer
        (standard Gaussian queries) on a batch of training instances: the fixed input scale
        of the ``"scale"`` preprocessing (estimate, and for the QueryRNN the update)."""
        problem = self.task.problem(self.train_ids[: self.cfg.batch], seed=self.cfg.seed)
        opt = ZOLSTMNoQuery(checkpoint=None, update_rnn=self.update_rnn, q=self.q,
                            mu=self.cfg.mu)
        grads: list[torch.Tensor] = []
        updates: list[torch.Tensor] = []

        def keep(t: int, out: Any, state: State) -> None:
            assert state.prev_update is not None
            grads.append(out.estimate.abs().flatten())
            updates.append(state.prev_update.abs().flatten())

        run(opt, problem, self.cfg.unroll, seed=self.cfg.seed, nonfinite="inf", callback=keep)
        medians = [torch.cat(grads).median(), torch.cat(updates).median()][:n_inputs]
        return [1.0 / float(m) if float(m) > 0 else 1.0 for m in medians]

    def optimizer(self, p_query: float = 1.0, problem: Problem | None = None) -> LearnedZO:
        """The learned optimizer of this stage around the trainer's modules (with the ``q``
        that ``problem`` suggests, e.g. a mixture member's, else the run's)."""
        q = getattr(problem, "suggested_q", None) if self.cfg.q is None else None
        q = q or self.q
        if self.cfg.stage == "update":
            return ZOLSTMNoQuery(checkpoint=None, update_rnn=self.update_rnn, q=q,
                                 mu=self.cfg.mu)
        return ZOLSTM(checkpoint=None, update_rnn=self.update_rnn, query_rnn=self.query_rnn,
                      p_query=p_query, q=q, mu=self.cfg.mu)

    def modules(self, weights: dict[str, torch.Tensor] | None = None
                ) -> dict[str, CoordinateLSTM]:
        """The modules to save (with ``weights`` loaded into the trained one, if given)."""
        trained = type(self.trainable)(self.trainable.config)
        trained.load_state_dict(weights or self.trainable.state_dict())
        if self.cfg.stage == "update":
            return {"update": trained}
        return {"update": self.update_rnn, "query": trained}

    def _weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.trainable.state_dict().items()}

    # ------------------------------------------------------------------ one run
    def oracle(self, problem: Problem) -> Oracle:
        """The optimizer's oracle: differentiable with autograd, black-box with ``zo``."""
        if self.grad == "autograd":
            linear = self.cfg.stage == "query" and self.cfg.query_grad == "linearized"
            return Oracle(problem.differentiable_objective, problem.dim, mode="problems",
                          differentiable="linearized" if linear else True,
                          dtype=problem.x0.dtype, nonfinite="inf")
        return Oracle(problem.objective, problem.dim, mode="problems",
                      dtype=problem.x0.dtype, nonfinite="inf")

    def value(self, problem: Problem, x: torch.Tensor) -> torch.Tensor:
        """``f(x)`` for the meta-loss, differentiable (autograd or eq. 5).  With
        ``eq4-log`` and autograd it is the task's reported (noiseless, full-data) loss."""
        if self.grad == "autograd" and self.cfg.meta_loss == "eq4-log" and \
                problem.reports_loss:
            return problem.loss(x)  # type: ignore[return-value]
        if self.grad == "autograd":
            return problem.differentiable_objective(x[:, None, :])[:, 0]
        return zo_value(x, problem.objective, self.cfg.zo_mu)

    def unroll_window(self, opt: LearnedZO, problem: Problem, oracle: Oracle,
                      x: torch.Tensor, state: State, gen: torch.Generator,
                      t0: int, n: int, previous: torch.Tensor,
                      reference: torch.Tensor | None = None) -> tuple[torch.Tensor, Window]:
        """Steps ``t0 .. t0 + n - 1`` with their graph; returns the truncation's meta-loss."""
        window = Window(x, [], [], [])
        for t in range(t0, t0 + n):
            out = advance(opt, problem, oracle, window.x, state, gen, t)
            window.x = out.x
            if "std_pred" in out.extras:
                window.std_preds.append(out.extras["std_pred"])
            problem.next_iteration(t + 1)
            window.values.append(self.value(problem, window.x))
            window.steps.append(t + 1)
        loss = window_loss(window.values, window.steps, kind=self.cfg.meta_loss,
                           previous=previous, std_preds=window.std_preds, lam=self.cfg.lam,
                           total_steps=self.cfg.steps, reference=reference)
        return loss, window

    def train_run(self, problem: Problem, gen: torch.Generator) -> dict[str, float]:
        """One optimizee run of ``steps`` steps, one Adam step per truncation."""
        cfg = self.cfg
        opt = self.optimizer(1.0, problem)
        oracle = self.oracle(problem)
        x = problem.x0.clone()
        state = opt.init_state(x)
        problem.next_iteration(0)
        with torch.no_grad():
            previous = self.value(problem, x).detach()
        reference = previous.clone()
        first, total, skipped = float(previous.mean()), 0.0, 0
        for t0 in range(0, cfg.steps, cfg.unroll):
            loss, window = self.unroll_window(opt, problem, oracle, x, state, gen, t0,
                                              min(cfg.unroll, cfg.steps - t0), previous,
                                              reference)
            self.adam.zero_grad(set_to_none=True)
            if not bool(torch.isfinite(loss)):
                skipped += 1  # a diverged run: no update, and the run ends here
                break
            loss.backward()
            for param in self.trainable.parameters():
                if param.grad is not None:
                    param.grad.clamp_(-cfg.clip, cfg.clip)
            self.adam.step()
            self.meta_step += 1
            total += float(loss.detach())
            x = window.x.detach()
            state.detach()
            previous = window.values[-1].detach()
        return {"meta_loss": total if not skipped else math.inf, "train_initial_loss": first,
                "train_final_loss": float(previous.mean())}

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        """Run the current optimizer (no graph) on the held-out training instances.

        ``val_loss`` is the eq. 4-weighted mean ``sum_t t L_t / sum_t t`` of the reported
        loss over the run (:func:`~zol2l.meta.objective.run_fitness`; ``inf`` if any row
        diverged), averaged over the task's validation batches (one per member of a
        mixture); ``val_final_loss`` the mean final loss (relative to the initial one with
        ``eq4-log``).
        """
        seed = derive_seed(self.cfg.seed, 7, 7, 7)
        batches = getattr(self.task, "validation", None)
        problems = batches(self.val_ids, seed) if batches is not None else \
            [self.task.problem(self.val_ids, trials=1, seed=seed)]
        values, finals = [], []
        for problem in problems:
            opt = self.optimizer(self.cfg.val_p_query, problem)
            loss = run(opt, problem, self.cfg.steps, seed=seed, nonfinite="inf").loss.double()
            values.append(run_fitness(loss, self.cfg.meta_loss))
            final = loss[-1] / (loss[0] if self.cfg.meta_loss == "eq4-log" else 1.0)
            finals.append(float(final.mean()) if bool(torch.isfinite(final).all())
                          else math.inf)
        return {"val_loss": sum(values) / len(values), "val_final_loss": sum(finals) / len(finals)}

    # ------------------------------------------------------------------ the loop
    def fit(self, stop_after_runs: int | None = None) -> dict[str, Any]:
        """Train until ``epochs * runs_per_epoch`` runs are done (or ``stop_after_runs`` more
        runs, to simulate an interruption); checkpoint after every run."""
        cfg = self.cfg
        total = cfg.epochs * cfg.runs_per_epoch
        if self.done == 0 and not self.log:
            tick = time.perf_counter()
            val = self.validate()
            self.best_val = self.last_val = val["val_loss"]
            self.log.append({"run": 0, "epoch": 0, "meta_step": 0, **val})
            self.elapsed += time.perf_counter() - tick
            self.files.save_best(self.modules(self.best_state), self._metadata())
        ran = 0
        with tqdm(total=total, initial=self.done, disable=not self.progress, file=sys.stderr,
                  desc=f"meta-train {cfg.stage}", unit="run", leave=False) as bar:
            while self.done < total and (stop_after_runs is None or ran < stop_after_runs):
                tick = time.perf_counter()
                epoch, r = divmod(self.done, cfg.runs_per_epoch)
                row = self._one_run(epoch, r)
                self.elapsed += time.perf_counter() - tick
                row["elapsed_s"] = self.elapsed
                self.log.append(row)
                self.files.save_state(self._state())
                self.files.write_log(self.log)
                ran += 1
                bar.update(1)
                bar.set_postfix(meta_loss=f"{row['meta_loss']:.4g}",
                                val=f"{self.last_val:.4g}")
        finished = self.done >= total
        self.files.save_best(self.modules(self.best_state), self._metadata(finished))
        return {"finished": finished, "runs": self.done, "meta_steps": self.meta_step,
                "best_validation_loss": self.best_val, "last_validation_loss": self.last_val,
                "training_seconds": self.elapsed, "checkpoint": str(self.files.best_path)}

    def _one_run(self, epoch: int, r: int) -> dict[str, Any]:
        cfg = self.cfg
        pick = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, r, 1))
        order = torch.randperm(len(self.train_ids), generator=pick).tolist()
        ids = [self.train_ids[i] for i in order[: min(cfg.batch, len(order))]]
        seed = derive_seed(cfg.seed, epoch, r, 2)
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, r, 3))
        if cfg.meta_grad == "es":
            stats = es_step(self, lambda: self.task.problem(ids, trials=1, seed=seed),
                            derive_seed(cfg.seed, epoch, r, 3))
        else:
            stats = self.train_run(self.task.problem(ids, trials=1, seed=seed), gen)
        row: dict[str, Any] = {"run": self.done + 1, "epoch": epoch + 1, **stats,
                               "meta_step": self.meta_step}
        self.done += 1
        if r == cfg.runs_per_epoch - 1 and ((epoch + 1) % cfg.val_every == 0
                                            or epoch + 1 == cfg.epochs):
            val = self.validate()
            row.update(val)
            self.last_val = val["val_loss"]
            if val["val_loss"] < self.best_val:
                self.best_val, self.best_state = val["val_loss"], self._weights()
                self.files.save_best(self.modules(self.best_state), self._metadata())
        return row

    # ------------------------------------------------------------------ persistence
    def _metadata(self, finished: bool = False) -> dict[str, Any]:
        return {
            "stage": self.cfg.stage, "task": self.cfg.task,
            "task_options": self.task.describe(), "command": self.cfg.command(),
            "seed": self.cfg.seed, "grad": self.grad, "meta_loss": self.cfg.meta_loss,
            "init": self.cfg.init, "init_sha256": self.init_sha256,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "training_seconds": self.elapsed, "runs": self.done, "meta_steps": self.meta_step,
            "finished": finished, "validation_loss": self.best_val,
            "best_validation_loss": self.best_val, "final_validation_loss": self.last_val,
            "validation_ids": self.val_ids, "config": self.cfg.to_dict(),
            "torch": torch.__version__,
        }

    def _state(self) -> dict[str, Any]:
        return {
            "version": 1, "config": json.dumps(self.cfg.to_dict(), sort_keys=True),
            "rnn_config": json.dumps(self.trainable.config.to_dict()),
            "init_sha256": self.init_sha256, "done": self.done, "meta_step": self.meta_step,
            "elapsed": self.elapsed, "trainable": self._weights(),
            "adam": self.adam.state_dict(), "best_val": self.best_val,
            "last_val": self.last_val, "best_state": self.best_state, "log": self.log,
            "torch_rng": torch.get_rng_state(),
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        self.trainable.load_state_dict(saved["trainable"])
        self.adam.load_state_dict(saved["adam"])
        self.done, self.meta_step = int(saved["done"]), int(saved["meta_step"])
        self.elapsed = float(saved["elapsed"])
        self.best_val, self.last_val = float(saved["best_val"]), float(saved["last_val"])
        self.best_state, self.log = saved["best_state"], list(saved["log"])
        torch.set_rng_state(saved["torch_rng"])
