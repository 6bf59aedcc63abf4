"""Property-based input hardening: any CLI input gives a result or a clean usage error (exit 2)."""

import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solverzoo.cli import main
from solverzoo.solvers import list_solvers

SOLVERS = [s for s in list_solvers() if s not in ("ode_adaptive", "sde_reference", "tdas", "pds")]
nfe_text = st.one_of(
    st.lists(st.integers(-3, 12), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))),
    st.text(alphabet="0123456789,-x. ", max_size=6),
)
solver_text = st.one_of(
    st.lists(st.sampled_from(SOLVERS), min_size=1, max_size=2, unique=True).map(",".join),
    st.text(alphabet="abcdeimnoprstu_,", min_size=1, max_size=8),
)
option_text = st.sampled_from([
    [], ["-o", "s_churn=5"], ["-o", "grid=\"uniform_lambda\""], ["-o", "final=\"sigma_min\""],
    ["-o", "grid=[3.0,1.0,0.0]"], ["-o", "grid=[1.0,1.0,0.0]"], ["-o", "final=\"nowhere\""], ["-o", "rho=-1"],
    ["-o", "grid_options={\"rho\": 0}"], ["-o", "eta=2"], ["-o", "order=9"], ["-o", "nonsense"],
])


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nfe=nfe_text, solvers=solver_text, options=option_text, num=st.integers(-1, 3),
       resolution=st.sampled_from(["8", "0", "x"]))
def test_bench_never_tracebacks(tmp_path_factory, nfe, solvers, options, num, resolution):
    out = tmp_path_factory.mktemp("fuzz") / "out"
    args = ["bench", "--model", "gmm-image", "-m", f"resolution={resolution}", "-m", "num_components=2",
            "--solvers", solvers, "--nfe", nfe, "--num-samples", str(num), "--out", str(out), *options]
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1, 2), (args, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    if result.exit_code == 2:
        assert "Error" in result.output and not out.exists()
    else:  # 0: every row ok; 1: a row failed or diverged, and is recorded as such
        rows = json.loads((out / "results.json").read_text())["rows"]
        statuses = {r["status"] for r in rows}
        assert (statuses == {"ok"}) == (result.exit_code == 0)


TYPED_KEYS = ["s_churn", "eta", "order", "rho", "s_noise", "s_tmin", "s_tmax", "snr", "n_corrector", "final", "grid"]
TYPED_VALUES = ["abc", "nan", "NaN", "inf", "-inf", "1e400", "true", "[1,2]", "{}", "3", "-2", "0.5", "null", '"x"',
                "[80, 10, 1, 0]", "[1,2,3]"]


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(solver=st.sampled_from(["heun", "ddim", "pc", "dpmpp_2m", "unipc", "seeds2", "euler_ancestral"]),
       key=st.sampled_from(TYPED_KEYS), value=st.one_of(st.sampled_from(TYPED_VALUES), st.text(max_size=6)))
def test_typed_option_values_never_traceback(tmp_path_factory, solver, key, value):
    out = tmp_path_factory.mktemp("typed") / "out"
    args = ["bench", "--model", "gmm-image", "-m", "resolution=8", "-m", "num_components=2", "--solvers", solver,
            "--nfe", "6", "--num-samples", "3", "-o", f"{solver}.{key}={value}", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1, 2), (args, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    if result.exit_code == 2:
        assert "Error" in result.output and not out.exists()
    if value.strip().lower() in ("nan", "abc") and key not in ("final", "grid"):
        assert result.exit_code == 2, (args, result.output)  # never a late failure for a wrong type / NaN


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(device=st.one_of(st.sampled_from(["tpu", "cuda:abc", "cuda:-1", "cuda:99", "meta", "", " ", "CUDA", "mps",
                                         "cpu", "cpu:0", "auto", "xla", "cuda:0:1"]), st.text(max_size=8)))
@pytest.mark.slow
def test_device_strings_never_traceback(tmp_path_factory, device):
    out = tmp_path_factory.mktemp("dev") / "out"
    args = ["bench", "--model", "gmm-image", "-m", "resolution=8", "-m", "num_components=2", "--solvers", "euler",
            "--nfe", "3", "--num-samples", "2", "--device", device, "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert result.exit_code in (0, 2), (args, result.output)
    if result.exit_code == 2:
        assert "--device" in result.output and not out.exists()


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=64), suffix=st.sampled_from([".npz", ".npy", ".png"]),
       command=st.sampled_from(["score", "filters", "fid-ref"]))
def test_corrupt_files_are_named_never_traceback(tmp_path_factory, payload, suffix, command):
    import numpy as np

    folder = tmp_path_factory.mktemp("corrupt")
    bad = folder / f"broken{suffix}"
    bad.write_bytes(payload)
    if command == "score":
        args = ["score", str(bad), "--model", "gmm-image", "-m", "resolution=8"]
        target = str(bad)
    else:  # a folder of images with one corrupt file, or the corrupt array itself
        if suffix == ".png":
            np.save(folder / "unused.npy", np.zeros(1))
            target = str(folder)
        else:
            target = str(bad)
        args = (["filters", "estimate", "--data", target, "--out", str(folder / "s.npz")] if command == "filters" else
                ["fid-ref", "--data", target, "--feature", "pixels", "--out", str(folder / "r.npz")])
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert result.exit_code == 2, (args, result.output)
    assert "broken" in result.output or target in result.output, (args, result.output)


# --------------------------------------------------------------------------- every command, hostile values
HOSTILE = st.one_of(
    st.sampled_from(["", " ", "abc", "nan", "inf", "-1", "0", "1e400", "8.5", "[1,2]", "{}", "null", "true",
                     "[" * 40 + "]" * 40, "9" * 5000, "tpu", "cuda:99", "x" * 300, "é", "@/nonexistent"]),
    st.text(max_size=10),
)
#: (command line, option under test, extra arguments that keep the work tiny when the value is accepted)
COMMANDS = [
    (["sample", "--model", "gmm-2d", "--solver", "euler", "--nfe", "4", "--num-samples", "2"], "-m", "key"),
    (["sample", "--model", "gmm-2d", "--solver", "heun", "--nfe", "4", "--num-samples", "2"], "-o", "key"),
    (["sample", "--model", "gmm-2d", "--solver", "euler", "--nfe", "4", "--num-samples", "2"], "--device", None),
    (["sample", "--model", "gmm-2d", "--solver", "euler", "--nfe", "4", "--num-samples", "2"], "--labels", None),
    (["bench", "--model", "gmm-2d", "--solvers", "euler", "--nfe", "4", "--num-samples", "2"], "--nfe", None),
    (["bench", "--model", "gmm-2d", "--solvers", "euler", "--nfe", "4", "--num-samples", "2"], "-m", "key"),
    (["bench", "--model", "gmm-2d", "--solvers", "euler", "--nfe", "4", "--num-samples", "2"], "--feature", None),
    (["tune-grid", "--model", "gmm-2d", "--solver", "euler", "--nfe", "4", "--num-samples", "2",
      "--max-evals", "2", "--reference-steps", "4"], "-o", "key"),
    (["tune-grid", "--model", "gmm-2d", "--solver", "euler", "--nfe", "4", "--num-samples", "2",
      "--max-evals", "2", "--reference-steps", "4"], "-m", "key"),
    (["filters", "tdas-estimate", "--model", "gmm-image", "-m", "resolution=8", "--nfe", "4", "--num", "2"],
     "--reference", None),
    (["filters", "estimate", "--num", "4"], "--data", None),
    (["fid-ref", "--feature", "pixels", "--num", "4", "--data", "digits"], "--device", None),
    (["train", "--iterations", "1", "--batch-size", "2", "--channels", "8"], "--channel-mult", None),
    (["score", "--model", "gmm-2d"], "-m", "key"),
    (["report"], None, None),
]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(range(len(COMMANDS))), key=st.sampled_from(["resolution", "s_churn", "nonsense",
                                                                           "order", "seed", "grid", "eta"]),
       value=HOSTILE)
def test_every_command_refuses_hostile_values_without_a_traceback(tmp_path_factory, command, key, value):
    import numpy as np

    base, option, form = COMMANDS[command]
    folder = tmp_path_factory.mktemp("any")
    args = list(base)
    if base[0] == "score":
        np.savez(folder / "s.npz", samples=np.zeros((4, 2)))
        args.insert(1, str(folder / "s.npz"))
    if base[0] == "report":
        args.append(str(folder / value) if value.strip() and "\x00" not in value else str(folder))
    elif option is not None:
        args += [option, f"{key}={value}" if form == "key" else value]
    if base[0] in ("sample", "bench", "train"):
        args += ["--out", str(folder / "out")]
    elif base[0] in ("tune-grid",):
        args += ["--out", str(folder / "g.json")]
    elif base[0] in ("filters", "fid-ref"):
        args += ["--out", str(folder / "f.npz")]
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert result.exit_code in (0, 1, 2), (args, result.output)
    assert "Traceback" not in result.output, (args, result.output)
    if result.exit_code == 1:  # 1 is a finished bench with a failed row, never an unexpected error
        assert base[0] == "bench" and "unexpected" not in result.output and "SOLVERZOO_DEBUG" not in result.output, \
            (args, result.output)
