"""Resume of an adversarial method after `kill -9`, and the refusals that protect an output folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli_helpers import FIXTURE_PLUGINS

STEPS = 24


def gan_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--plugins-dir", str(FIXTURE_PLUGINS), "--method", "tiny-gan", "--dataset", "demo-pairs",
            "--data-root", str(root), "--out", str(out), "--steps", str(STEPS), "--batch-size", "4",
            "--checkpoint-every", "4", "--workers", "1", "--quiet", *extra]


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    root.mkdir()
    (root / "READY").write_text("ok")
    return root


def losses(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_gan_killed_half_way_resumes_bit_identical(cli, tmp_path):
    root = make_root(tmp_path)
    code, _, err = cli(*gan_args(root, tmp_path / "straight"))
    assert code == 0, err

    resumed = tmp_path / "resumed"
    exe = Path(sys.executable).with_name("harness")
    process = subprocess.Popen([str(exe), *gan_args(root, resumed)], env={**os.environ, "DEMO_STEP_SLEEP": "0.15"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            manifest = resumed / "manifest.json"
            if (resumed / "state.pt").is_file() and manifest.is_file() and json.loads(manifest.read_text())["step"] >= 8:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    killed_at = json.loads((resumed / "manifest.json").read_text())["step"]
    assert 8 <= killed_at < STEPS

    code, _, err = cli(*gan_args(root, resumed))
    assert code == 0, err
    a, b = load_file(str(tmp_path / "straight" / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state_a = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    state_b = torch.load(resumed / "state.pt", weights_only=True)
    for name in ("generator", "discriminator"):
        for key, value in state_a["recipe"]["networks"][name].items():
            assert torch.equal(value, state_b["recipe"]["networks"][name][key]), (name, key)
    pool_a, pool_b = state_a["recipe"]["stateful"]["pool"]["images"], state_b["recipe"]["stateful"]["pool"]["images"]
    assert len(pool_a) == len(pool_b) == 3 and all(torch.equal(x, y) for x, y in zip(pool_a, pool_b))
    # Every logged loss of every step matches, and the log holds each step once.
    assert losses(tmp_path / "straight") == losses(resumed)
    assert [entry["step"] for entry in losses(resumed)] == list(range(1, STEPS + 1))


@pytest.mark.parametrize(("variable", "saved_at"), [("DEMO_SIGTERM_AT", 7), ("DEMO_INTERRUPT_AT", 4)])
def test_stop_request_finishes_the_step_and_a_torn_step_is_not_saved(cli, tmp_path, monkeypatch, variable, saved_at):
    """SIGTERM between D's and G's update: the step completes and is saved. A KeyboardInterrupt inside a
    step: nothing of it is saved, the last checkpoint (step 4) stands. Both resume bit-identical."""
    root = make_root(tmp_path)
    assert gan(cli, root, tmp_path / "straight", "--steps", "10", "--workers", "0")[0] == 0
    monkeypatch.setenv(variable, "6")
    code, _, err = gan(cli, root, tmp_path / "resumed", "--steps", "10", "--workers", "0")
    assert code == (143 if variable == "DEMO_SIGTERM_AT" else 130) and "resume" in err  # 128 + SIGTERM
    assert json.loads((tmp_path / "resumed" / "manifest.json").read_text())["step"] == saved_at
    assert torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)["step"] == saved_at
    monkeypatch.delenv(variable)
    assert gan(cli, root, tmp_path / "resumed", "--steps", "10", "--workers", "0")[0] == 0
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")


def gan(cli, root, out, *extra):
    return cli(*gan_args(root, out, *extra))


def test_truncated_state_is_a_data_error_naming_the_file(cli, tmp_path):
    root = make_root(tmp_path)
    out = tmp_path / "ckpt"
    code, _, err = gan(cli, root, out, "--steps", "8")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["completed"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    data = (out / "state.pt").read_bytes()
    (out / "state.pt").write_bytes(data[: len(data) // 2])
    code, _, err = gan(cli, root, out, "--steps", "8")
    assert code == 2 and f"cannot resume from {out / 'state.pt'}" in err and "Traceback" not in err


def test_state_with_pickled_objects_is_refused(cli, tmp_path):
    root = make_root(tmp_path)
    out = tmp_path / "ckpt"
    assert gan(cli, root, out, "--steps", "8")[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["completed"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    state = torch.load(out / "state.pt", weights_only=True)
    state["payload"] = Path("/etc/passwd")  # any non-tensor object makes torch pickle it
    torch.save(state, out / "state.pt")
    code, _, err = gan(cli, root, out, "--steps", "8")
    assert code == 2 and "state.pt" in err and "pickled objects are refused" in err


def test_files_no_manifest_explains_are_never_overwritten(cli, tmp_path):
    root = make_root(tmp_path)
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"my precious weights")
    code, _, err = gan(cli, root, out)
    assert code == 2 and "model.safetensors" in err and "no manifest.json" in err
    assert (out / "model.safetensors").read_bytes() == b"my precious weights"

    other = tmp_path / "other"
    assert gan(cli, root, other, "--steps", "4")[0] == 0
    (other / "notes.txt").write_text("mine")
    code, _, err = gan(cli, root, other, "--steps", "4")
    assert code == 2 and "notes.txt" in err


def test_ema_weights_are_exported(cli, tmp_path):
    root = make_root(tmp_path)
    code, _, err = gan(cli, root, tmp_path / "ema", "--steps", "6", "--option", "ema=0.5")
    assert code == 0, err
    state = torch.load(tmp_path / "ema" / "state.pt", weights_only=True)
    exported = load_file(str(tmp_path / "ema" / "model.safetensors"))
    shadow = state["recipe"]["stateful"]["generator_ema"]["shadow"]
    raw = state["recipe"]["networks"]["generator"]
    assert all(torch.equal(exported[k], shadow[k]) for k in exported)
    assert not all(torch.equal(exported[k], raw[k]) for k in exported)


def test_periodic_evaluation_is_logged_and_keeps_the_best(cli, tmp_path):
    root = make_root(tmp_path)
    out = tmp_path / "ckpt"
    code, stdout, err = gan(cli, root, out, "--steps", "8", "--eval-every", "4", "--eval-split", "test",
                            "--metric", "demo-mae", "--keep-best", "mae")
    assert code == 0, err
    evals = [entry for entry in losses(out) if "eval" in entry]
    assert [entry["step"] for entry in evals] == [4, 8]
    manifest = json.loads((out / "manifest.json").read_text())
    best = min(evals, key=lambda entry: entry["eval"]["demo-mae"]["mae"])
    assert manifest["best"]["step"] == best["step"] and manifest["best"]["value"] == best["eval"]["demo-mae"]["mae"]
    assert (out / "best.safetensors").is_file() and "best:" in stdout
    # The evaluation goes through the runner: `harness run` on the best weights gives the logged number.
    code, run_out, err = cli("run", "--plugins-dir", FIXTURE_PLUGINS, "--method", "tiny-gan", "--dataset", "demo-pairs",
                             "--data-root", root, "--split", "test", "--metric", "demo-mae",
                             "--checkpoint", out / "best.safetensors", "--json", "--quiet")
    assert code == 0, err
    assert json.loads(run_out)["metrics"]["demo-mae"]["values"]["mae"] == pytest.approx(manifest["best"]["value"], abs=0)


def test_evaluation_does_not_change_training(cli, tmp_path):
    root = make_root(tmp_path)
    assert gan(cli, root, tmp_path / "plain", "--steps", "6")[0] == 0
    assert gan(cli, root, tmp_path / "evaluated", "--steps", "6", "--eval-every", "2", "--metric", "demo-mae")[0] == 0
    a = load_file(str(tmp_path / "plain" / "model.safetensors"))
    b = load_file(str(tmp_path / "evaluated" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_keep_best_without_evaluation_is_refused(cli, tmp_path):
    code, _, err = gan(cli, make_root(tmp_path), tmp_path / "ckpt", "--keep-best", "mae")
    assert code == 2 and "--eval-every" in err


def test_bad_evaluation_settings_fail_before_training(cli, tmp_path):
    root = make_root(tmp_path)
    code, _, err = gan(cli, root, tmp_path / "ckpt", "--eval-every", "2", "--metric", "no-such-metric")
    assert code == 2 and "no-such-metric" in err
    code, _, err = gan(cli, root, tmp_path / "ckpt", "--eval-every", "2", "--eval-split", "nope")
    assert code == 2 and "no split 'nope'" in err
    assert not (tmp_path / "ckpt").exists()
