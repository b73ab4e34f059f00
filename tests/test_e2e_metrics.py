"""Metric plugins through the CLI as a user runs them on the bundled rain-synth."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from inception_weights import random_inception_state

from harness_plugins.shared.inception_net import PROTOCOLS


def run_json(cli, *args):
    code, out, err = cli("run", "--dataset", "rain-synth", "--quiet", "--json", *args)
    assert code == 0, err
    return json.loads(out)


def test_fid_without_weights_names_the_file(cli):
    code, _, err = cli("run", "--method", "identity", "--dataset", "rain-synth", "--metric", "fid", "--limit", "2",
                       "--quiet")
    assert code == 2
    assert PROTOCOLS["pytorch-fid"].weights_file in err and "hub/checkpoints" in err


def test_generative_metrics_from_hub_cache_weights(cli):
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(random_inception_state(), folder / PROTOCOLS["pytorch-fid"].weights_file)
    record = run_json(cli, "--method", "identity", "--metric", "fid,kid,is", "--limit", "4",
                      "--metric-option", "kid.subset_size=4", "--metric-option", "is.splits=2")
    fid = record["metrics"]["fid"]
    assert fid["values"]["fid"] is not None and fid["values"]["fid"] > 0
    assert fid["higher_is_better"] is False and record["metrics"]["is"]["higher_is_better"] is True
    assert PROTOCOLS["pytorch-fid"].weights_file in json.dumps(fid["convention"])
    assert set(record["metrics"]["kid"]["values"]) == {"kid", "kid-std"}


def test_pixel_errors_and_model_cost(cli):
    record = run_json(cli, "--method", "identity", "--metric", "l1,l2,latency", "--limit", "2",
                      "--metric-option", "latency.iters=3", "--metric-option", "latency.warmup=1")
    assert record["metrics"]["l1"]["values"]["l1"] > record["metrics"]["l2"]["values"]["l2"] > 0
    assert record["metrics"]["latency"]["details"]["device"]["device"] == "cpu"

    record = run_json(cli, "--method", "dsen", "--untrained", "--metric", "params,macs", "--limit", "1")
    assert record["metrics"]["params"]["values"]["params"] == 50_958
    assert record["method"]["untrained"] is True


def test_model_metric_on_model_free_method_is_refused(cli):
    code, _, err = cli("run", "--method", "identity", "--dataset", "rain-synth", "--metric", "params", "--quiet")
    assert code == 2 and "identity" in err


def test_metric_for_another_output_kind_is_refused(cli):
    code, _, err = cli("run", "--method", "identity", "--dataset", "rain-synth", "--metric", "cmc", "--quiet")
    assert code == 2 and "embedding" in err
