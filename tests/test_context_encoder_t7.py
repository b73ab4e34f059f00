"""Context Encoder's released Torch7 generators (``paris_inpaintCenter.t7``…): files written here with the
official ``train.lua`` netG's module tree, class and field names (`t7_writer`) are imported through the CLI,
and the imported network must compute what the Lua network computes, as a forward written directly from the
saved arrays (not the harness network) says; a layer that does not fit is named; ``run --checkpoint FILE.t7``
converts while loading and records the file's sha256."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from t7_writer import T7Object, empty, save_t7

from harness.checkpoints import load_state_dict
from harness_plugins.datasets.inpaint_synth import InpaintSynth
from harness_plugins.methods.inpainting.context_encoder import ContextEncoder, ContextEncoderG

WIDTH, CODE = 8, 100
SMALL = ("--option", f"width={WIDTH}", "--option", f"bottleneck_size={CODE}")


def module(kind: str, **fields) -> T7Object:
    """An nn module as util.save leaves it: its own fields plus the cleared buffers every module has."""
    return T7Object(kind, {"output": empty(), "gradInput": empty(), "train": False, "_type": "torch.FloatTensor", **fields})


class LuaNetG:
    """train.lua's netG (centre model, no noise) from seeded arrays in Torch7's layouts, with a forward
    computed from those arrays by torch.nn.functional (the reference)."""

    def __init__(self, width: int = WIDTH, code: int = CODE, seed: int = 0, flavour: str = "nn") -> None:
        self.rng, self.flavour = np.random.default_rng(seed), flavour
        self.steps: list[tuple] = []  # (op, arrays/params) in forward order
        nef = ngf = width
        encoder = [self.conv(3, nef, 4, 2, 1), self.leaky()]
        for c_in, c_out in ((nef, nef), (nef, 2 * nef), (2 * nef, 4 * nef), (4 * nef, 8 * nef)):
            encoder += [self.conv(c_in, c_out, 4, 2, 1), self.bn(c_out), self.leaky()]
        encoder.append(self.conv(8 * nef, code, 4, 1, 0))
        layers = [module("nn.Sequential", modules=encoder), self.bn(code), self.leaky(),
                  self.full(code, 8 * ngf, 4, 1, 0), self.bn(8 * ngf), self.relu()]
        for c_in, c_out in ((8 * ngf, 4 * ngf), (4 * ngf, 2 * ngf), (2 * ngf, ngf)):
            layers += [self.full(c_in, c_out, 4, 2, 1), self.bn(c_out), self.relu()]
        layers += [self.full(ngf, 3, 4, 2, 1), self.tanh()]
        self.root = module("nn.Sequential", modules=layers)

    def array(self, *shape: int, scale: float = 0.05, offset: float = 0.0) -> np.ndarray:
        return self.rng.standard_normal(shape, dtype=np.float32) * np.float32(scale) + np.float32(offset)

    def conv(self, c_in: int, c_out: int, k: int, stride: int, pad: int) -> T7Object:
        weight, bias = self.array(c_out, c_in, k, k, scale=1 / np.sqrt(c_in * k * k)), self.array(c_out, scale=0.01)
        self.steps.append(("conv", weight, bias, stride, pad))
        kind = "cudnn.SpatialConvolution" if self.flavour == "cudnn" else "nn.SpatialConvolution"
        stored = weight.reshape(c_out, -1).copy() if self.flavour == "legacy" else weight  # 2015 files: flattened
        return module(kind, nInputPlane=c_in, nOutputPlane=c_out, kW=k, kH=k, dW=stride, dH=stride, padW=pad,
                      padH=pad, weight=stored, bias=bias, finput=empty(), fgradInput=empty())

    def full(self, c_in: int, c_out: int, k: int, stride: int, pad: int) -> T7Object:
        weight = self.array(c_in, c_out, k, k, scale=stride / np.sqrt(c_in * k * k))
        bias = self.array(c_out, scale=0.01)  # (nInputPlane, nOutputPlane, kH, kW)
        self.steps.append(("full", weight, bias, stride, pad))
        kind = "cudnn.SpatialFullConvolution" if self.flavour == "cudnn" else "nn.SpatialFullConvolution"
        return module(kind, nInputPlane=c_in, nOutputPlane=c_out, kW=k, kH=k, dW=stride,
                      dH=stride, padW=pad, padH=pad, adjW=0, adjH=0, weight=weight, bias=bias, finput=empty(),
                      fgradInput=empty(), ones=empty())

    def bn(self, channels: int) -> T7Object:
        weight, bias = self.array(channels, scale=0.1, offset=1.0), self.array(channels, scale=0.1)
        mean = self.array(channels, scale=0.2)
        var = np.abs(self.array(channels, scale=0.5, offset=1.0)).astype(np.float32) + 0.1
        eps = 1e-5
        self.steps.append(("bn", weight, bias, mean, var, eps))
        fields = {"eps": eps, "momentum": 0.1, "affine": True, "weight": weight, "bias": bias, "running_mean": mean,
                  "save_mean": empty(), "save_std": empty()}
        if self.flavour == "legacy":  # nn before BatchNormalization version 2: running_std = 1/sqrt(var + eps)
            fields["running_std"] = (1.0 / np.sqrt(var.astype(np.float64) + eps)).astype(np.float32)
            return module("nn.SpatialBatchNormalization", **fields)
        fields["running_var"] = var
        kind = "cudnn.SpatialBatchNormalization" if self.flavour == "cudnn" else "nn.SpatialBatchNormalization"
        return T7Object(kind, {**module(kind).fields, **fields}, version=2)

    def leaky(self) -> T7Object:
        self.steps.append(("leaky", 0.2))
        return module("nn.LeakyReLU", negval=0.2, inplace=True)

    def relu(self) -> T7Object:
        self.steps.append(("relu",))
        if self.flavour == "cudnn":
            return module("cudnn.ReLU", inplace=True, mode="CUDNN_ACTIVATION_RELU")
        return module("nn.ReLU", threshold=0, val=0, inplace=True)

    def tanh(self) -> T7Object:
        self.steps.append(("tanh",))
        return module("cudnn.Tanh" if self.flavour == "cudnn" else "nn.Tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The Lua network in evaluation mode (batch norm on its running statistics), from the arrays."""
        t = torch.from_numpy
        for op, *p in self.steps:
            if op == "conv":
                x = F.conv2d(x, t(p[0]), t(p[1]), stride=p[2], padding=p[3])
            elif op == "full":
                x = F.conv_transpose2d(x, t(p[0]), t(p[1]), stride=p[2], padding=p[3])
            elif op == "bn":
                x = F.batch_norm(x, t(p[2]), t(p[3]), t(p[0]), t(p[1]), training=False, eps=p[4])
            elif op == "leaky":
                x = F.leaky_relu(x, p[0])
            elif op == "relu":
                x = F.relu(x)
            else:
                x = torch.tanh(x)
        return x

    def save(self, path: Path) -> Path:
        return save_t7(self.root, path)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("flavour", ["nn", "legacy", "cudnn"])
def test_imported_release_computes_what_the_lua_network_computes(cli, tmp_path, flavour):
    lua = LuaNetG(flavour=flavour)
    source = lua.save(tmp_path / "paris_inpaintCenter.t7")
    out = tmp_path / "imported.safetensors"
    code, stdout, err = cli("weights", "import", "context-encoder", source, *SMALL, "--out", out, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["source_sha256"] == sha256(source) and Path(report["out"]) == out

    network = ContextEncoderG(WIDTH, "fc", CODE)
    network.load_state_dict(load_state_dict(out))
    network.eval()
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected, got = lua.forward(x), network(x)
    assert got.shape == (2, 3, 64, 64)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()
    assert expected.std() > 0.1  # the comparison is not between two saturated or constant outputs


def test_a_layer_that_does_not_fit_is_named_and_nothing_is_written(cli, tmp_path):
    lua = LuaNetG()
    full = lua.root.fields["modules"][6]  # the 8w -> 4w full convolution: decoder.0 in the harness
    full.fields["weight"] = full.fields["weight"][:, :-1].copy()  # one output plane short
    source = lua.save(tmp_path / "bad.t7")
    out = tmp_path / "bad.safetensors"
    code, _, err = cli("weights", "import", "context-encoder", source, *SMALL, "--out", out)
    assert code == 2 and "Traceback" not in err
    assert "bad.t7" in err and "layer 21" in err and "module 7" in err and "decoder.0" in err
    assert "weight (64, 31, 4, 4), network (64, 32, 4, 4)" in err
    assert not out.exists()


def test_a_release_of_other_widths_names_the_options_that_fit(cli, tmp_path):
    source = LuaNetG().save(tmp_path / "small.t7")
    code, _, err = cli("weights", "import", "context-encoder", source, "--out", tmp_path / "x.safetensors")
    assert code == 2 and "layer 1" in err and "encoder.0" in err
    assert f"--option width={WIDTH} --option bottleneck_size={CODE}" in err


def test_extra_or_missing_layers_and_foreign_files_are_refused(cli, tmp_path):
    lua = LuaNetG()
    lua.root.fields["modules"].append(module("nn.Sigmoid"))
    code, _, err = cli("weights", "import", "context-encoder", lua.save(tmp_path / "long.t7"), *SMALL)
    assert code == 2 and "the file has 1 more" in err and "nn.Sigmoid" in err
    lua = LuaNetG()
    del lua.root.fields["modules"][-2:]
    code, _, err = cli("weights", "import", "context-encoder", lua.save(tmp_path / "short.t7"), *SMALL)
    assert code == 2 and "the network has 2 more" in err
    (tmp_path / "junk.t7").write_bytes(b"\x07\x00\x00\x00garbage")
    code, _, err = cli("weights", "import", "context-encoder", tmp_path / "junk.t7", *SMALL)
    assert code == 2 and "not a readable Torch7" in err and "Traceback" not in err


def test_the_release_needs_the_official_bottleneck_and_mask_convention(cli, tmp_path):
    source = LuaNetG().save(tmp_path / "r.t7")
    for option, word in (("bottleneck=channel-wise", "fc bottleneck"), ("mask_convention=full", "overlapPred=4")):
        code, _, err = cli("weights", "import", "context-encoder", source, *SMALL, "--option", option)
        assert code == 2 and word in err, err


def test_without_torchfile_the_import_says_what_to_install(cli, tmp_path, monkeypatch):
    source = LuaNetG().save(tmp_path / "r.t7")
    monkeypatch.setitem(sys.modules, "torchfile", None)  # `import torchfile` raises ImportError
    code, _, err = cli("weights", "import", "context-encoder", source, *SMALL)
    assert code == 2 and "pip install 'harness[official]'" in err


def test_run_on_the_t7_file_converts_while_loading_and_records_it(cli, tmp_path):
    root = tmp_path / "inpaint-synth"
    InpaintSynth(root).verify("test")
    source = LuaNetG(seed=3).save(tmp_path / "paris_inpaintCenter.t7")
    run = ("run", "--method", "context-encoder", *SMALL, "--dataset", "inpaint-synth", "--data-root", root,
           "--dataset-option", "hole=0.4375", "--limit", "2", "--metric", "psnr", "--json")
    code, stdout, err = cli(*run, "--checkpoint", source)
    assert code == 0, err
    record = json.loads(stdout)
    release = record["method"]["imported_from"]
    assert release["source_sha256"] == sha256(source) == record["method"]["checkpoint_sha256"]
    assert release["imported_from"] == "paris_inpaintCenter.t7" and release["converted"] == "while loading"

    out = tmp_path / "imported.safetensors"
    assert cli("weights", "import", "context-encoder", source, *SMALL, "--out", out)[0] == 0
    code, stdout, err = cli(*run, "--checkpoint", out)
    assert code == 0, err
    imported = json.loads(stdout)
    assert imported["method"]["imported_from"]["source_sha256"] == sha256(source)
    assert imported["metrics"]["psnr"]["values"] == record["metrics"]["psnr"]["values"]


def test_the_official_size_release_fills_the_71m_parameter_network(tmp_path):
    """train.lua with the README's nBottleneck=4000 and nef = ngf = 64: every one of Torch's 71,130,531
    parameters lands in the harness network."""
    lua = LuaNetG(width=64, code=4000, seed=5)
    source = lua.save(tmp_path / "imagenet_inpaintCenter.t7")
    method = ContextEncoder()
    state = method.convert_official(source)
    network = method.build()
    network.load_state_dict(state)
    assert sum(p.numel() for p in network.parameters()) == 71_130_531
    conv = next(step for step in lua.steps if step[0] == "conv" and step[1].shape[0] == 4000)
    assert torch.equal(network.bottleneck[0].weight, torch.from_numpy(conv[1]))
    full = next(step for step in lua.steps if step[0] == "full")
    assert torch.equal(network.bottleneck[3].weight, torch.from_numpy(full[1]))
