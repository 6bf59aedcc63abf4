"""The held-out denoising loss of ``solverzoo train``: a fixed subset never trained on, fixed sigmas and
noise, evaluated every K iterations into the log and the checkpoint meta, with the convergence criterion
(improvement < 1% per 1000 iterations); resume keeps the curve and continues it exactly."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import solverzoo.train as train_module
from solverzoo.cli import main
from solverzoo.data import load_digits
from solverzoo.models.learned import load_checkpoint
from solverzoo.train import TrainConfig, convergence, heldout_loss, heldout_split, train

TINY = {"channels": 8, "channel_mult": [1, 2], "attn_levels": [1], "emb_channels": 16, "noise_channels": 8}


def _config(**overrides) -> TrainConfig:
    base = dict(iterations=6, batch_size=8, checkpoint_every=3, log_every=1, lr_rampup=2, unet=dict(TINY),
                heldout=16, heldout_every=2)
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def data():
    return load_digits()[:64]


def _heldout_log(path) -> list[dict]:
    return [r for r in map(json.loads, (path / "log.jsonl").read_text().splitlines()) if "heldout_loss" in r]


def test_the_split_is_fixed_disjoint_and_never_trained_on(tmp_path, data, monkeypatch):
    held, rest = heldout_split(64, 16, seed=0)
    assert len(held) == 16 and len(rest) == 48 and not set(held.tolist()) & set(rest.tolist())
    assert torch.equal(held, heldout_split(64, 16, seed=0)[0]) and not torch.equal(held, heldout_split(64, 16, 1)[0])
    assert len(heldout_split(64, 0, 0)[0]) == 0 and torch.equal(heldout_split(64, 0, 0)[1], torch.arange(64))
    with pytest.raises(ValueError, match="--heldout 40"):
        heldout_split(64, 40, 0)
    # held-out images set to NaN: a training batch holding one would make that iteration's loss NaN
    marked = data.clone()
    marked[held] = float("nan")
    seen = []
    real_randint = torch.randint

    def watch(high, size, generator=None):
        seen.append(int(high))
        return real_randint(high, size, generator=generator)

    monkeypatch.setattr(train_module.torch, "randint", watch)
    train(_config(iterations=4, heldout_every=100), tmp_path / "r", data=marked)
    assert seen == [48] * 4  # the draws index the 48 training images only
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "r" / "log.jsonl").read_text().splitlines())
              if "loss" in r]
    assert len(losses) == 4 and all(v == v for v in losses)


def test_heldout_is_logged_and_in_the_meta(tmp_path, data):
    train(_config(), tmp_path / "r", data=data)
    logged = _heldout_log(tmp_path / "r")
    assert [r["iteration"] for r in logged] == [2, 4, 6]
    assert all(r["heldout_loss"] > 0 for r in logged)
    meta = load_checkpoint(tmp_path / "r" / "model.pt").meta["heldout"]
    assert meta["images"] == 16 and meta["every"] == 2
    assert meta["curve"] == [[r["iteration"], r["heldout_loss"]] for r in logged]
    assert meta["improvement"] is None and meta["flattened"] is None  # 6 iterations < the 1000-iteration window
    assert "1%" in meta["criterion"] and "1000" in meta["criterion"]
    snap = load_checkpoint(tmp_path / "r" / "snapshots" / "model-000003.pt").meta["heldout"]
    assert snap["curve"] == meta["curve"][:1]


def test_heldout_loss_is_the_training_loss_on_fixed_draws(tmp_path, data):
    config = _config()
    train(config, tmp_path / "r", data=data)
    model = load_checkpoint(tmp_path / "r" / "model.pt")
    held = data[heldout_split(len(data), 16, config.seed)[0]]
    sigma, weight, noise = train_module._heldout_draws(config, model.net, held)
    again = train_module._heldout_draws(config, model.net, held)
    assert all(torch.equal(a, b) for a, b in zip((sigma, weight, noise), again))  # the same draws every time
    value = heldout_loss(model.net, held, sigma, weight, noise, batch=5)  # batching does not matter
    expected = float((weight * (model.net(held + noise, sigma.flatten()) - held) ** 2).mean())
    assert value == pytest.approx(expected, rel=1e-5)
    assert value == pytest.approx(_heldout_log(tmp_path / "r")[-1]["heldout_loss"], rel=1e-5)  # the model.pt EMA


def test_resume_keeps_the_curve_and_training_is_unchanged_by_the_evaluation(tmp_path, data):
    straight = train(_config(), tmp_path / "a", data=data)
    train(_config(), tmp_path / "b", data=data, stop_after=3)
    train(_config(heldout_every=1), tmp_path / "b", data=data, resume=True)  # heldout_every may change
    a = load_checkpoint(tmp_path / "a" / "model.pt")
    b = load_checkpoint(tmp_path / "b" / "model.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))
    curve_a, curve_b = dict(map(tuple, a.meta["heldout"]["curve"])), dict(map(tuple, b.meta["heldout"]["curve"]))
    assert sorted(curve_b) == [2, 4, 5, 6] and all(curve_b[k] == curve_a[k] for k in (2, 4, 6))
    assert straight.final_loss is not None
    with pytest.raises(ValueError, match="heldout"):
        train(_config(iterations=8, heldout=8), tmp_path / "b", data=data, resume=True)


def test_convergence_criterion():
    assert convergence([])["flattened"] is None
    assert convergence([[100, 1.0], [900, 0.5]])["improvement"] is None
    still = convergence([[100, 1.0], [1000, 0.9], [2000, 0.85]])
    assert still["over"] == [1000, 2000] and still["improvement"] == pytest.approx(0.05 / 0.9)
    assert still["flattened"] is False
    flat = convergence([[1000, 0.5], [1500, 0.499], [2100, 0.497]])
    assert flat["over"] == [1000, 2100] and flat["flattened"] is True
    assert convergence([[0, 1.0], [50, 0.999]], window=50)["flattened"] is True


def test_cli_heldout_reports_and_refuses_bad_values(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--iterations", "3", "--batch-size", "8", "--channels", "8",
            "--channel-mult", "1,2", "--threads", "1", "--heldout", "32", "--heldout-every", "3"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "held-out loss" in result.output and "on 32 images" in result.output
    bad = runner.invoke(main, args[:-4] + ["--heldout", "5000", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--heldout 5000" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize("precond", ["flow", "fdm_edm"])
def test_heldout_with_other_objectives(tmp_path, data, precond):
    extra = {"warmup_ite": 2} if precond.startswith("fdm") else {}
    train(_config(precond=precond, iterations=4, **extra), tmp_path / "r", data=data)
    curve = load_checkpoint(tmp_path / "r" / "model.pt").meta["heldout"]["curve"]
    assert [k for k, _ in curve] == [2, 4] and all(v > 0 and v == v for _, v in curve)


def test_until_flattened_stops_at_the_first_flat_evaluation_with_a_checkpoint(tmp_path, data, monkeypatch):
    # a criterion over 2 iterations that any rise meets (the real one spans 1000 iterations)
    def fake_convergence(curve, window=2, tolerance=1.0):
        return convergence(curve, window=window, tolerance=tolerance)

    monkeypatch.setattr(train_module, "convergence", fake_convergence)
    result = train(_config(iterations=40, checkpoint_every=100), tmp_path / "r", data=data, until_flattened=True)
    # evaluations at 2, 4, ...: the first one spanning the window is iteration 4, and a loss < 2x the earlier
    # one improves by more than -100%, so it is "flat" under this tolerance
    assert result.flattened and result.iterations == 4
    meta = load_checkpoint(tmp_path / "r" / "model.pt").meta
    assert meta["iterations"] == 4 and (tmp_path / "r" / "snapshots" / "model-000004.pt").is_file()
    assert _heldout_log(tmp_path / "r")[-1]["flattened"] is True
    plain = train(_config(iterations=6), tmp_path / "plain", data=data)  # without the flag: runs on
    assert plain.flattened and plain.iterations == 6
    with pytest.raises(ValueError, match="heldout > 0"):
        train(_config(heldout=0), tmp_path / "x", data=data, until_flattened=True)


def test_cli_until_flattened_needs_heldout(tmp_path):
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "r"), "--iterations", "3", "--until-flattened"])
    assert result.exit_code == 2 and "--heldout" in result.output and "Traceback" not in result.output
