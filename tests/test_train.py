"""Training: EDM / FDM preconditioning and losses, resume equals an uninterrupted run, the CLI,
and the shipped digits-unet checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from solverzoo.cli import main
from solverzoo.data import load_digits
from solverzoo.models import get_model
from solverzoo.models.learned import load_checkpoint
from solverzoo.models.unet import PRECONDS, Precond, PrecondConfig, UNet
from solverzoo.train import TrainConfig, loss_sigma_weight, train, warmup_clamp

TINY = {"channels": 8, "channel_mult": [1, 2], "attn_levels": [1], "emb_channels": 16, "noise_channels": 8}


def _config(**overrides) -> TrainConfig:
    base = dict(iterations=6, batch_size=8, checkpoint_every=3, log_every=1, lr_rampup=2, unet=dict(TINY))
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return load_digits()[:64]


# ----------------------------------------------------------------------------- preconditioning
def test_edm_preconditioning_coefficients():
    net = Precond(UNet(resolution=8, in_channels=1, **TINY), PrecondConfig(kind="edm", sigma_data=0.5))
    sigma = torch.tensor([0.002, 0.5, 80.0])
    c_skip, c_out, c_in, c_noise = (c.flatten() for c in net.coefficients(sigma))
    assert torch.allclose(c_skip, 0.25 / (sigma**2 + 0.25))
    assert torch.allclose(c_out, sigma * 0.5 / (sigma**2 + 0.25).sqrt())
    assert torch.allclose(c_in, 1 / (sigma**2 + 0.25).sqrt())
    assert torch.allclose(c_noise, sigma.log() / 4)
    # a zero network output gives D = c_skip x (the output layer is zero-initialised)
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(net(x, sigma), c_skip.reshape(-1, 1, 1, 1) * x, atol=1e-6)


@pytest.mark.parametrize("kind", [k for k in PRECONDS if k.startswith("fdm")])
def test_fdm_c_in_is_the_process_scale(kind):
    net = Precond(UNet(resolution=8, in_channels=1, **TINY), PrecondConfig(kind=kind, fdm_multiplier=2.0))
    proc = net.process()
    assert proc.name == kind.replace("_", "-") and proc.multiplier == 2.0
    sigma = torch.tensor([proc.sigma_min, 0.3, 5.0, proc.sigma_max], dtype=torch.float64)
    c_in = net.coefficients(sigma.float())[2].double()
    assert torch.allclose(c_in, proc.s_of_sigma(sigma), rtol=1e-5)
    # the other coefficients are the base parameterisation's
    base = Precond(UNet(resolution=8, in_channels=1, **TINY), PrecondConfig(kind=kind.replace("fdm_", "")))
    for a, b in zip(net.coefficients(sigma.float())[:2], base.coefficients(sigma.float())[:2]):
        assert torch.allclose(a, b)
    assert base.process().name == kind.replace("fdm_", "")


def test_warmup_clamp_schedule():
    # FDM's loss: clamp 5, multiplied by 100^(1/n) per iteration while below 500, then no clamp
    assert warmup_clamp(0, 200) == 5.0
    assert warmup_clamp(100, 200) == pytest.approx(50.0)
    assert warmup_clamp(199, 200) == pytest.approx(5 * 100 ** (199 / 200))
    assert warmup_clamp(200, 200) is None and warmup_clamp(5000, 200) is None
    assert warmup_clamp(0, None) is None
    cfg = _config(precond="fdm_edm", warmup_ite=10)
    net = Precond(UNet(resolution=8, in_channels=1, **TINY), PrecondConfig(kind="fdm_edm"))
    gen = torch.Generator().manual_seed(0)
    sigma, weight = loss_sigma_weight(cfg, net, 4096, gen, 0)
    assert float(weight.max()) <= 5.0 + 1e-6
    edm = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    assert torch.allclose(weight, edm.clamp(max=5.0))
    # log-normal sigma with P_mean = -1.2, P_std = 1.2
    assert abs(float(sigma.log().mean()) + 1.2) < 0.1 and abs(float(sigma.log().std()) - 1.2) < 0.1


# ----------------------------------------------------------------------------- training runs
def test_train_writes_a_loadable_model(tmp_path, data):
    result = train(_config(), tmp_path / "run", data=data)
    assert result.iterations == 6 and result.final_loss is not None and result.final_loss == result.final_loss
    assert sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir()) == ["model-000003.pt", "model-000006.pt"]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2, 3, 4, 5, 6]
    model = get_model(str(tmp_path / "run" / "model.pt"))
    assert model.shape == (1, 8, 8) and model.process.name == "edm"
    assert model.meta["iterations"] == 6 and model.data == "digits"
    from solverzoo.sampling import sample

    out = sample(model, "heun", nfe=3, num_samples=4, seed=0)
    assert torch.isfinite(out.samples).all()
    with pytest.raises(ValueError, match="already holds a training run"):
        train(_config(), tmp_path / "run", data=data)


def test_resume_continues_exactly(tmp_path, data):
    straight = train(_config(), tmp_path / "a", data=data)
    train(_config(), tmp_path / "b", data=data, stop_after=4)
    assert load_checkpoint(tmp_path / "b" / "model.pt").meta["iterations"] == 4
    resumed = train(_config(), tmp_path / "b", data=data, resume=True)
    assert resumed.iterations == 6
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    log_b = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in log_a] == [json.loads(x)["loss"] for x in log_b]
    assert straight.final_loss == resumed.final_loss
    # more iterations may be asked for on resume, other options must match
    train(_config(iterations=7), tmp_path / "b", data=data, resume=True)
    with pytest.raises(ValueError, match="different options"):
        train(_config(iterations=8, lr=1e-4), tmp_path / "b", data=data, resume=True)
    with pytest.raises(ValueError, match="nothing to resume"):
        train(_config(), tmp_path / "c", data=data, resume=True)


def test_fdm_training_runs(tmp_path, data):
    result = train(_config(precond="fdm_edm", fdm_multiplier=2.0, warmup_ite=3, iterations=3), tmp_path / "f",
                   data=data)
    model = load_checkpoint(result.model_path)
    assert model.process.name == "fdm-edm" and model.process.multiplier == 2.0
    from solverzoo.sampling import sample

    assert torch.isfinite(sample(model, "fdm", nfe=3, num_samples=2, seed=0).samples).all()


def test_cli_train_resume_and_export(tmp_path):
    runner = CliRunner()
    out, export = tmp_path / "run", tmp_path / "ship.pt"
    args = ["train", "--out", str(out), "--iterations", "3", "--batch-size", "8", "--channels", "8",
            "--channel-mult", "1,2", "--checkpoint-every", "2", "--threads", "1"]
    result = runner.invoke(main, args + ["--export", str(export)])
    assert result.exit_code == 0, result.output
    assert (out / "model.pt").is_file() and export.is_file()
    shipped = load_checkpoint(export)
    assert all(v.dtype == torch.float16 for v in torch.load(export, weights_only=True)["state_dict"].values()
               if v.is_floating_point())
    assert shipped.meta["command"].startswith("solverzoo ")
    result = runner.invoke(main, args)  # same folder without --resume
    assert result.exit_code == 2 and "--resume" in result.output
    result = runner.invoke(main, args[:4] + ["4"] + args[5:] + ["--resume"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "model.pt").meta["iterations"] == 4
    result = runner.invoke(main, ["train", "--out", str(tmp_path / "x"), "--precond", "bogus"])
    assert result.exit_code == 2


# ----------------------------------------------------------------------------- class-conditional training
def test_conditional_unet_null_label_and_labels():
    torch.manual_seed(0)
    net = Precond(UNet(resolution=8, in_channels=1, num_classes=10, **TINY), PrecondConfig(kind="edm"))
    for p in net.parameters():  # a non-trivial network (zero-initialised output layers otherwise)
        torch.nn.init.normal_(p, std=0.3)
    net.eval()
    x, sigma = torch.randn(4, 1, 8, 8), torch.full((4,), 0.7)
    null = net(x, sigma)  # no labels: every row null
    assert torch.equal(net(x, sigma, torch.full((4,), -1)), null)
    mixed = net(x, sigma, torch.tensor([3, -1, 5, -1]))
    assert torch.equal(mixed[1], null[1]) and torch.equal(mixed[3], null[3])
    assert (mixed[0] - null[0]).abs().max() > 1e-3
    assert (mixed[0] - net(x, sigma, torch.tensor([4, 4, 4, 4]))[0]).abs().max() > 1e-3
    # a row's output depends on its own label only (labels follow the rows)
    assert torch.allclose(net(x[:1], sigma[:1], torch.tensor([3]))[0], mixed[0], atol=1e-6)
    plain = Precond(UNet(resolution=8, in_channels=1, **TINY), PrecondConfig(kind="edm"))
    assert plain.num_classes == 0 and net.num_classes == 10
    with pytest.raises(ValueError, match="unconditional UNet"):
        plain(x, sigma, torch.zeros(4, dtype=torch.long))


def test_label_dropout_training_and_resume(tmp_path, data, monkeypatch):
    from solverzoo.models import unet as unet_module

    images, labels = load_digits(with_labels=True)
    seen = []
    forward = unet_module.LabelEmbedding.forward

    def spy(self, c, batch, device):
        if torch.is_grad_enabled():
            seen.append(c.clone())
        return forward(self, c, batch, device)

    monkeypatch.setattr(unet_module.LabelEmbedding, "forward", spy)
    config = _config(labels=True, label_dropout=0.5)
    straight = train(config, tmp_path / "a", data=images[:64], labels=labels[:64])
    drawn = torch.cat(seen)
    assert len(drawn) == 6 * 8 and set(drawn.tolist()) <= set(range(10)) | {-1}
    assert 0.25 < float((drawn == -1).float().mean()) < 0.75  # label dropout at the asked rate
    model = load_checkpoint(straight.model_path)
    assert model.net.num_classes == 10 and model.meta["num_classes"] == 10
    # a conditional run resumes exactly, like an unconditional one
    train(config, tmp_path / "b", data=images[:64], labels=labels[:64], stop_after=4)
    train(config, tmp_path / "b", data=images[:64], labels=labels[:64], resume=True)
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert "net.label_embed.table.weight" in a and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="different options"):
        train(_config(labels=True, label_dropout=0.2), tmp_path / "b", data=images[:64], labels=labels[:64],
              resume=True)
    with pytest.raises(ValueError, match="one int label"):
        train(config, tmp_path / "c", data=images[:64], labels=labels[:10])
    with pytest.raises(ValueError, match="label_dropout"):
        _config(labels=True, label_dropout=1.0)
    with pytest.raises(ValueError, match="only 'digits' has labels"):
        _config(labels=True, data="patches")


def test_cli_train_labels(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cond"
    args = ["train", "--out", str(out), "--iterations", "2", "--batch-size", "8", "--channels", "8",
            "--channel-mult", "1,2", "--threads", "1", "--labels", "--label-dropout", "0.2"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    model = load_checkpoint(out / "model.pt")
    assert model.net.num_classes == 10 and model.meta["train_config"]["label_dropout"] == 0.2
    result = runner.invoke(main, args[:2] + [str(tmp_path / "x")] + args[3:-1] + ["1.5"])
    assert result.exit_code == 2 and "label-dropout" in result.output
    result = runner.invoke(main, ["train", "--out", str(tmp_path / "y"), "--data", "patches", "--labels"])
    assert result.exit_code == 2 and "labels" in result.output


# ----------------------------------------------------------------------------- the shipped model
def test_shipped_digits_unet_loads_and_samples():
    model = get_model("digits-unet")
    assert model.shape == (1, 8, 8) and model.process.name == "edm"
    assert model.data == "digits" and model.default_feature == "digits_classifier"
    assert 200_000 < model.describe()["parameters"] < 1_000_000
    from solverzoo.sampling import sample

    out = sample(model, "heun", nfe=19, num_samples=8, seed=0)
    assert torch.isfinite(out.samples).all() and float(out.samples.abs().max()) < 2.0
    with pytest.raises(ValueError, match="takes no options"):
        get_model("digits-unet", resolution=16)
