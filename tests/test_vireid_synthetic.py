"""The synthetic pedestrians end to end: deterministic, above chance for hand-crafted features, and a
learned model above the hand-crafted ones (slow: it trains)."""

from __future__ import annotations

import json

import pytest
import torch

import harness


def test_rendering_is_deterministic_and_modalities_differ(tmp_path):
    first = harness.create_dataset("vireid-synth", tmp_path, identities=2, images=1, height=64, width=32)
    second = harness.create_dataset("vireid-synth", tmp_path, identities=2, images=1, height=64, width=32)
    rows = first.index("test")
    a, b = first.load(rows[0]), second.load(second.index("test")[0])
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (3, 64, 32)
    infrared = first.load(next(r for r in rows if r["modality"] == "infrared"))["image"]
    assert torch.equal(infrared[0], infrared[1]) and torch.equal(infrared[1], infrared[2])  # grey, 3 channels
    assert {r["pid"] for r in rows}.isdisjoint({r["pid"] for r in first.index("train")})
    paired = harness.create_dataset("vireid-synth", tmp_path, identities=2, images=1, variant="regdb")
    assert {(r["camid"], r["modality"]) for r in paired.index("test")} == {(1, "visible"), (2, "infrared")}
    assert paired.metric_params("cmc")["protocol"] == "regdb"
    market = harness.create_dataset("reid-synth", tmp_path, identities=2)
    assert {r["modality"] for r in market.index("test")} == {"visible"} and market.metric_params("map")["protocol"] == "market1501"


def _rank1_and_map(cli, method, *args):
    code, out, err = cli("run", "--method", method, "--dataset", "vireid-synth", *args, "--json", "--quiet")
    assert code == 0, err
    record = json.loads(out)
    return record["metrics"]["cmc"]["values"]["rank-1"], record["metrics"]["map"]["values"]["mAP"]


SMALL_SET = ("--dataset-option", "identities=8", "--dataset-option", "images=2")
CHANCE_SMALL = 100.0 / 8
"""Chance rank-1 on the SYSU-like protocol with 8 test identities: the identity-de-duplicated CMC ranks 8 identities."""


def test_handcrafted_features_are_above_chance(cli):
    for method in ("hog", "lomo"):
        rank1, _ = _rank1_and_map(cli, method, *SMALL_SET)
        assert rank1 > CHANCE_SMALL, (method, rank1)


@pytest.mark.slow
def test_learned_two_stream_beats_handcrafted_features(tmp_path, cli):
    """Default vireid-synth (16 test identities: chance rank-1 6.25 %); two-stream, backbone=small, 300 steps at 64×32."""
    chance = 100.0 / 16
    options = ("--option", "backbone=small", "--option", "init=scratch", "--option", "height=64", "--option", "width=32")
    code, _, err = cli("train", "--method", "two-stream", "--dataset", "vireid-synth", *options,
                       "--steps", "300", "--batch-size", "32", "--out", tmp_path / "ts", "--quiet")
    assert code == 0, err
    learned = _rank1_and_map(cli, "two-stream", "--checkpoint", tmp_path / "ts", *options)
    handcrafted = [_rank1_and_map(cli, method) for method in ("hog", "lomo")]
    for rank1, _ in (learned, *handcrafted):
        assert rank1 > chance
    assert learned[1] > max(mAP for _, mAP in handcrafted), (learned, handcrafted)
