"""FID routes, offline: the missing-Inception error path, clean-fid's custom-feature route,
fid-ref statistics and the bench on a learned model against data statistics."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from solverzoo.cli import main
from solverzoo.data import load_digits, load_images, to_uint8
from solverzoo.metrics.fd import ExactReference
from solverzoo.metrics.fid import (
    INCEPTION_ENV,
    build_extractor,
    data_reference,
    feature_metric_name,
    load_digits_classifier,
    load_reference,
    reference_statistics,
    resolve_inception,
)
from solverzoo.models import get_model
from solverzoo.models.learned import build_denoiser, save_checkpoint


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread in these tests (much faster on busy shared cores), restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

EXTRACTOR = textwrap.dedent('''
    import torch
    import torch.nn.functional as F

    def make():
        """A tiny clean-fid custom_feat_extractor: 2 x 2 average pools of the 299 x 299 RGB input."""
        return lambda x: F.adaptive_avg_pool2d(x.float(), 2).reshape(len(x), -1)
''')


@pytest.fixture(autouse=True)
def _no_inception_env(monkeypatch):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)


@pytest.fixture()
def no_downloads(monkeypatch):
    """Any attempt by clean-fid to fetch a file fails the test."""
    import cleanfid.downloads_helper as dl

    def refuse(*args, **kwargs):
        raise AssertionError("clean-fid tried to download a file")

    monkeypatch.setattr(dl, "check_download_url", refuse)
    monkeypatch.setattr(dl, "check_download_inception", refuse)
    import cleanfid.inception_torchscript as its

    monkeypatch.setattr(its, "check_download_inception", refuse)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = build_denoiser({"resolution": 8, "in_channels": 1, "channels": 8, "channel_mult": [1, 2], "attn_levels": [1],
                          "emb_channels": 16, "noise_channels": 8, "dropout": 0.0}, {"kind": "edm"})
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, net, meta={"data": "digits", "default_feature": "digits_classifier"})
    return path


def _write_pngs(folder: Path, images: torch.Tensor) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, img in enumerate(to_uint8(images)):
        Image.fromarray(img[0].numpy(), mode="L").save(folder / f"{i:04d}.png")


def test_metric_names_say_the_feature_space():
    assert feature_metric_name("pixels") == "fd_pixels"
    assert feature_metric_name("pool:4") == "fd_pool4"
    assert feature_metric_name("digits_classifier") == "fd_digits_classifier"
    assert feature_metric_name("inception") == "fid_inception"
    assert feature_metric_name("custom:my_mod:make") == "fd_custom_make"
    with pytest.raises(ValueError, match="unknown feature"):
        feature_metric_name("vgg")


def test_missing_inception_is_a_clear_error(tmp_path, no_downloads):
    with pytest.raises(ValueError, match=INCEPTION_ENV) as err:
        resolve_inception(None)
    assert "never downloads" in str(err.value) and "https://" in str(err.value)
    with pytest.raises(ValueError, match="not found at"):
        resolve_inception(tmp_path / "inception.pt")
    with pytest.raises(ValueError, match="not found at"):
        resolve_inception(tmp_path)  # a folder without inception-2015-12-05.pt


def test_cli_missing_inception_exits_2_and_writes_nothing(tmp_path, tiny_checkpoint, no_downloads):
    runner = CliRunner()
    out = tmp_path / "bench"
    result = runner.invoke(main, ["bench", "--model", str(tiny_checkpoint), "--solvers", "euler", "--nfe", "2",
                                  "--num-samples", "4", "--feature", "inception", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert INCEPTION_ENV in result.output and "--inception" in result.output
    assert not out.exists()
    ref = tmp_path / "ref.npz"
    result = runner.invoke(main, ["fid-ref", "--data", "digits", "--out", str(ref), "--inception",
                                  str(tmp_path / "missing.pt")])
    assert result.exit_code == 2 and "not found at" in result.output
    assert not ref.exists()
    result = runner.invoke(main, ["fid-ref", "--data", "digits", "--out", str(ref)], env={INCEPTION_ENV: ""})
    assert result.exit_code == 2 and "none was given" in result.output
    assert not ref.exists()


def test_custom_feature_route_matches_clean_fid(tmp_path, monkeypatch, no_downloads):
    """Our tensor pipeline (uint8, clean resize, custom extractor, FD) vs clean-fid's compute_fid
    on the same images written as PNG folders."""
    from cleanfid import fid as cfid

    (tmp_path / "tiny_extractor.py").write_text(EXTRACTOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    x = load_digits()
    a, b = x[:30], x[100:130] * 0.8  # two different image sets
    _write_pngs(tmp_path / "a", a)
    _write_pngs(tmp_path / "b", b)
    extractor = build_extractor("custom:tiny_extractor:make")
    assert extractor.metric == "fd_custom_make"
    fa = extractor(load_images(tmp_path / "a"))
    fb = extractor(load_images(tmp_path / "b"))
    assert torch.allclose(fa, extractor(a[:30]), atol=1e-4)  # tensors and PNG files agree (both uint8)
    mean_b, cov_b = reference_statistics(fb)
    ours = ExactReference(mean_b, cov_b).distance_samples(fa)
    sys.modules.pop("tiny_extractor", None)
    import tiny_extractor

    theirs = cfid.compute_fid(str(tmp_path / "a"), str(tmp_path / "b"), mode="clean", num_workers=0,
                              batch_size=16, device=torch.device("cpu"), verbose=False,
                              custom_feat_extractor=tiny_extractor.make())
    assert theirs > 1.0
    assert abs(ours - theirs) < 1e-3 * theirs, (ours, theirs)


def test_shipped_digits_classifier():
    net = load_digits_classifier()
    x, y = load_digits(with_labels=True)
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).float().mean())
        feats = net.features(x[:5])
    assert acc > 0.97
    assert feats.shape == (5, 64)


def test_fid_ref_file_gives_the_same_reference_as_the_data(tmp_path, tiny_checkpoint):
    ref = tmp_path / "digits_ref.npz"
    result = CliRunner().invoke(main, ["fid-ref", "--data", "digits", "--feature", "digits_classifier", "--out",
                                       str(ref)])
    assert result.exit_code == 0, result.output
    stats = load_reference(ref)
    assert stats["count"] == 1797 and stats["features"].shape == (1797, 64)
    model = get_model(str(tiny_checkpoint))
    from_data = data_reference(model, "digits_classifier", 100, repeats=2, seed=0)
    from_file = data_reference(model, "digits_classifier", 100, repeats=2, seed=0, reference=str(ref))
    assert torch.allclose(from_data.reference.mean, from_file.reference.mean, atol=1e-5)
    assert torch.allclose(from_data.reference.cov, from_file.reference.cov, rtol=1e-4, atol=1e-4)
    assert len(from_data.floors) == 2 and from_data.floors[0] != from_data.floors[1]
    assert np.allclose(from_data.floors, from_file.floors, rtol=1e-4)
    # a statistics file of another feature space is refused
    with pytest.raises(ValueError, match="fd_digits_classifier statistics"):
        data_reference(model, "pixels", 100, reference=str(ref))


def test_bench_on_a_learned_model_uses_data_statistics(tmp_path, tiny_checkpoint):
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "--model", str(tiny_checkpoint), "--solvers", "euler,heun",
                                       "--nfe", "3,5", "--num-samples", "40", "--batch-size", "20", "--out",
                                       str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "fd_digits_classifier"  # the model's default feature
    assert "1797 real images" in results["metric_note"]
    assert results["oracle_floor"] > 0
    assert {(r["solver"], r["nfe"]) for r in results["rows"]} == {("euler", 3), ("euler", 5), ("heun", 3),
                                                                  ("heun", 5)}
    assert all(r["status"] == "ok" and r["fd_excess"] == pytest.approx(r["fd"] - results["oracle_floor"])
               for r in results["rows"])
    # pixels against the same data works too, and says so
    out2 = tmp_path / "bench2"
    result = CliRunner().invoke(main, ["bench", "--model", str(tiny_checkpoint), "--solvers", "euler", "--nfe", "3",
                                       "--num-samples", "20", "--feature", "pixels", "--out", str(out2)])
    assert result.exit_code == 0, result.output
    assert json.loads((out2 / "results.json").read_text())["metric"] == "fd_pixels"
    # an analytic model refuses data-reference options
    result = CliRunner().invoke(main, ["bench", "--model", "gmm-2d", "--reference", "digits", "--out",
                                       str(tmp_path / "b3")])
    assert result.exit_code == 2 and "learned models" in result.output
