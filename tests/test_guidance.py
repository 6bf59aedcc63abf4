"""Class labels and classifier-free guidance through the one model interface, in every sampler."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import solverzoo
from solverzoo.cli import main
from solverzoo.models import GMMImage, get_model
from solverzoo.models.base import NULL_LABEL
from solverzoo.models.guidance import Conditioning, GuidedModel, condition, label_accuracy, parse_labels
from solverzoo.solvers import get_solver, list_solvers

F64 = torch.float64


@pytest.fixture(scope="module")
def tiny():
    """A 3-class conditional gmm-image, 1 x 4 x 4, float64 (exact denoisers, cheap)."""
    return GMMImage(1, 4, 4, num_components=3, seed=2, process="edm", dtype=F64, conditional=True)


class _Spy:
    """A conditional model that records the batch sizes and labels of its calls."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.process, self.shape, self.num_classes, self.name = model.process, model.shape, model.num_classes, "spy"

    def to(self, device, dtype=None):
        return self

    def denoise(self, x, sigma, labels=None):
        self.calls.append((x.shape[0], None if labels is None else labels.clone()))
        return self.model.denoise(x, sigma, labels)


# ----------------------------------------------------------------------------- NFE counting
def test_one_guided_call_is_one_nfe_and_one_batched_network_call(tiny):
    spy = _Spy(tiny)
    res = solverzoo.sample(spy, "dpmpp_2m", nfe=8, num_samples=5, seed=0, guidance=3.0, labels="2,0", dtype=F64)
    assert res.nfe == 8 and len(spy.calls) == 8  # one counted call = one batched call of the model
    rows, labels = spy.calls[0]
    assert rows == 10 and labels.tolist() == [2, 0, 2, 0, 2] + [NULL_LABEL] * 5
    assert res.describe()["conditioning"] == {"labels": "2,0", "num_classes": 3, "guidance": 3.0,
                                              "nfe_counting": "one batched conditional + unconditional call = 1 NFE",
                                              "network_passes_per_nfe": 2}


# ----------------------------------------------------------------------------- every sampler
def _applicable(name: str, model) -> bool:
    solver = get_solver(name)
    try:
        solver.check_model(model)
    except ValueError:
        return False
    return solver.info.family != "reference" and not solver.info.adaptive  # adaptive: one batch (below: 4 of 6)


@pytest.mark.parametrize("name", list_solvers())
def test_guidance_works_in_every_sampler(tiny, name):
    """For every solver, unchanged: w = 1 gives the conditional samples (labels alone), w = 0 the
    unconditional ones, and w = 4 runs with the same counted NFE (one guided call = one NFE)."""
    if not _applicable(name, tiny):
        pytest.skip(f"{name} does not apply to gmm-image / is tolerance-driven (its NFE follows the batch)")
    solver = get_solver(name)
    nfe = max(12, solver.info.min_nfe if hasattr(solver.info, "min_nfe") else 12)
    kw = dict(nfe=nfe, num_samples=6, seed=1, batch_size=4, dtype=F64)
    cond = solverzoo.sample(tiny, name, labels="0,1,2", **kw)
    w1 = solverzoo.sample(tiny, name, labels="0,1,2", guidance=1.0, **kw)
    assert torch.allclose(w1.samples, cond.samples, atol=1e-9, rtol=1e-9)
    uncond = solverzoo.sample(tiny, name, **kw)
    w0 = solverzoo.sample(tiny, name, labels="0,1,2", guidance=0.0, **kw)
    assert torch.allclose(w0.samples, uncond.samples, atol=1e-9, rtol=1e-9)
    w4 = solverzoo.sample(tiny, name, labels="0,1,2", guidance=4.0, **kw)
    assert w4.nfe == cond.nfe == uncond.nfe and torch.isfinite(w4.samples).all()
    assert not torch.allclose(w4.samples, cond.samples, atol=1e-6)  # guidance changes the samples


# ----------------------------------------------------------------------------- labels follow the sample index
def test_labels_follow_the_sample_index(tiny):
    a = solverzoo.sample(tiny, "heun", nfe=9, num_samples=7, seed=4, batch_size=7, guidance=2.0, labels="random",
                         dtype=F64)
    b = solverzoo.sample(tiny, "heun", nfe=9, num_samples=7, seed=4, batch_size=3, guidance=2.0, labels="random",
                         dtype=F64)
    c = solverzoo.sample(tiny, "heun", nfe=9, num_samples=4, seed=4, start_index=3, guidance=2.0, labels="random",
                         dtype=F64)
    # the same labels (hence samples, up to the denoiser's batch-size-dependent rounding) at any batching
    assert torch.allclose(a.samples, b.samples, atol=1e-12) and torch.allclose(a.samples[3:], c.samples, atol=1e-12)
    cond = Conditioning(3, "random", 2.0, seed=4)
    drawn = cond.labels_for(range(300))
    assert torch.equal(drawn[10:20], cond.labels_for(range(10, 20)))
    assert set(drawn.tolist()) == {0, 1, 2}
    assert not torch.equal(drawn, Conditioning(3, "random", 2.0, 5).labels_for(range(300)))
    assert Conditioning(3, "2,0", None, 0).labels_for(range(1, 5)).tolist() == [0, 2, 0, 2]
    assert Conditioning(3, None, 2.0, 0).labels_for(range(4)).tolist() == [0, 1, 2, 0]  # default: all classes


def test_guided_model_keeps_the_wrapped_model_interface(tiny):
    guided = GuidedModel(tiny, 2.5)
    assert guided.process is tiny.process and guided.shape == tiny.shape and guided.num_classes == 3
    assert torch.equal(guided.data_mean(), tiny.data_mean()) and guided.describe()["guidance"] == 2.5
    with pytest.raises(ValueError, match="one label per row"):
        guided.denoise(torch.zeros(2, 1, 4, 4, dtype=F64), torch.ones(2, dtype=F64))


# ----------------------------------------------------------------------------- errors
def test_bad_guidance_and_labels_are_clear_errors(tiny):
    plain = get_model("gmm-image", resolution=4, channels=1)
    for kw in ({"guidance": 2.0}, {"labels": "0"}):
        with pytest.raises(ValueError, match="class-conditional model"):
            condition(plain, **kw)
    with pytest.raises(ValueError, match="out of range"):
        condition(tiny, 2.0, "0,3")
    with pytest.raises(ValueError, match="w >= 0"):
        condition(tiny, -1.0)
    with pytest.raises(ValueError, match="w >= 0"):
        condition(tiny, float("nan"))
    with pytest.raises(ValueError, match="bad labels"):
        parse_labels("one,two", 3)
    with pytest.raises(ValueError, match="empty"):
        parse_labels(",", 3)
    assert parse_labels("all", 3) == [0, 1, 2] and parse_labels([2, 1], 3) == [2, 1] and parse_labels(1, 3) == [1]
    with pytest.raises(ValueError, match="conditional must be true or false"):
        get_model("gmm-image", conditional="yes")


def test_cli_guidance_errors_exit_2_before_work(tmp_path):
    runner = CliRunner()
    base = ["--model", "gmm-image", "-m", "resolution=4", "-m", "channels=1"]
    cases = [
        ["sample", *base, "--solver", "heun", "--nfe", "9", "--out", str(tmp_path / "s"), "--guidance", "3"],
        ["sample", *base, "-m", "conditional=true", "--solver", "heun", "--nfe", "9", "--out", str(tmp_path / "s"),
         "--labels", "0,8"],
        ["bench", *base, "--solvers", "heun", "--nfe", "9", "--out", str(tmp_path / "b"), "--guidance", "3"],
        ["bench", *base, "-m", "conditional=true", "--solvers", "heun", "--nfe", "9", "--out", str(tmp_path / "b"),
         "--guidance", "-2"],
        ["bench", *base, "-m", "conditional=true", "--solvers", "heun", "--nfe", "9", "--out", str(tmp_path / "b"),
         "--labels", "random,1"],
    ]
    for args in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "s").exists() and not (tmp_path / "b").exists()


def test_cli_sample_with_guidance(tmp_path):
    import numpy as np

    out = tmp_path / "s"
    result = CliRunner().invoke(main, ["sample", "--model", "gmm-image", "-m", "resolution=4", "-m", "channels=1",
                                       "-m", "conditional=true", "--solver", "dpmpp_2m", "--nfe", "10",
                                       "--num-samples", "4", "--guidance", "4", "--labels", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out / "samples.npz") as z:
        meta = json.loads(str(z["meta"]))
        assert z["samples"].shape == (4, 1, 4, 4)
    assert meta["conditioning"]["guidance"] == 4.0 and meta["conditioning"]["labels"] == "1"


# ----------------------------------------------------------------------------- bench under guidance
def test_bench_reports_pathwise_error_to_a_guided_reference(tmp_path):
    """The pathwise reference is solved with the same guidance: heun at the reference's own budget
    lands on it (path_rms ~ 0), a 10-NFE solve does not; results record the conditioning."""
    from solverzoo.bench.runner import PATH_REFERENCE_NFE

    out = tmp_path / "b"
    args = ["bench", "--model", "gmm-image", "-m", "resolution=4", "-m", "channels=1", "-m", "conditional=true",
            "-m", "process=edm", "--solvers", "heun,dpmpp_2m", "--nfe", f"10,{PATH_REFERENCE_NFE}",
            "--num-samples", "12", "--batch-size", "12", "--guidance", "5", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    res = json.loads((out / "results.json").read_text())
    assert res["conditioning"]["guidance"] == 5.0 and res["conditioning"]["network_passes_per_nfe"] == 2
    assert res["config"]["guidance"] == 5.0
    rows = {(r["solver"], r["nfe_requested"]): r for r in res["rows"]}
    assert rows[("heun", PATH_REFERENCE_NFE)]["metrics"]["path_rms"] < 1e-6
    assert rows[("heun", 10)]["metrics"]["path_rms"] > 1e-3 and rows[("dpmpp_2m", 10)]["metrics"]["path_rms"] > 1e-4
    assert all("label_accuracy" not in r["metrics"] for r in res["rows"])  # not digits


# ----------------------------------------------------------------------------- classifier accuracy
def test_label_accuracy_on_real_digits():
    from solverzoo.data import load_digits

    images, labels = load_digits(with_labels=True)
    assert label_accuracy(images[:300], labels[:300]) > 0.95
    assert label_accuracy(images[:300], (labels[:300] + 1) % 10) < 0.1


# ----------------------------------------------------------------------------- the shipped conditional digits model
def test_shipped_digits_cond_unet():
    """Registered, float16 and <= 2 MB, class-conditional with a null label; its guided samples are
    the requested digits for the shipped classifier, and guidance raises that accuracy."""
    from solverzoo.models.learned import SHIPPED, shipped_checkpoint

    path = shipped_checkpoint("digits-cond-unet")
    assert SHIPPED["digits-cond-unet"] == path.name and path.stat().st_size <= 2_000_000
    state = torch.load(path, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    model = get_model("digits-cond-unet")
    assert model.num_classes == 10 and model.shape == (1, 8, 8) and model.data == "digits"
    labels = torch.arange(40) % 10
    kw = dict(nfe=20, num_samples=40, seed=0, batch_size=40)
    acc = {w: label_accuracy(solverzoo.sample(model, "dpmpp_2m", guidance=w, labels="all", **kw).samples, labels)
           for w in (1.0, 3.0)}
    assert acc[1.0] > 0.8 and acc[3.0] >= acc[1.0] - 0.05, acc
    uncond = solverzoo.sample(model, "dpmpp_2m", **kw).samples  # the null label: the unconditional model
    assert torch.isfinite(uncond).all() and label_accuracy(uncond, labels) < 0.5
