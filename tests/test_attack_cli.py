"""`zol2l attack` end to end with the shipped MNIST target on real MNIST images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, needs_data

from zol2l.cli import main
from zol2l.data import load_dataset
from zol2l.targets import accuracy, load_pretrained_target


@needs_data
@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_shipped_targets_verified_and_accurate_on_a_subset(name: str) -> None:
    model = load_pretrained_target(name)  # verifies the sha256
    images, labels = load_dataset(name, DATA, "test")
    acc = accuracy(model, images[:500], labels[:500])
    assert acc >= (0.98 if name == "mnist" else 0.85), acc


@needs_data
def test_attack_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "attack"
    code = main(["attack", "--dataset", "mnist", "--optimizer", "zo-adam,zo-sgd", "--images",
                 "3", "--trials", "2", "--steps", "60", "--box", "clamp", "--data-dir",
                 str(DATA), "--out", str(out), "--quiet"])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert data["task"] == "mnist-attack" and data["q"] == 20 and len(data["instances"]) == 3
    for name, block in data["optimizers"].items():
        for key in ("success_rate", "iters_to_success_mean", "iters_to_success_median",
                    "queries_to_success_mean", "distortion_success", "distortion_final",
                    "loss_mean", "final_loss_mean", "success_curve"):
            assert key in block, (name, key)
        assert len(block["loss_mean"]) == 61 and block["queries_per_step"] == [21] * 60
        assert 0.0 <= block["success_rate"] <= 1.0
    # the saved adversarial examples really are misclassified by the target
    model = load_pretrained_target("mnist")
    saved = np.load(out / "adversarial.npz")
    checked = 0
    for name in data["optimizers"]:
        adv, labels = saved[f"{name}/adversarial"], saved[f"{name}/labels"]
        ok = ~np.isnan(adv).reshape(len(adv), -1).any(1)
        assert ok.sum() == round(data["optimizers"][name]["success_rate"] * len(adv))
        if ok.any():
            pred = model(torch.from_numpy(adv[ok])).argmax(1).numpy()
            assert (pred != labels[ok]).all()
            checked += int(ok.sum())
    assert (out / "examples.png").stat().st_size > 5_000
    assert (out / "loss.png").stat().st_size > 5_000
    assert checked > 0, "no attack succeeded in 60 steps: the check above was vacuous"
