"""Official released weights of the pose-transfer methods (issue #22): Def-GAN's Keras ``.h5`` generator,
SPT's PyTorch demo generator, PG²'s TensorFlow checkpoints (a route only), and the declarations of the
methods that already loaded their official PyTorch files (CycleGAN, UNIT, Hi-CMD).

The files are written here in the official layouts at a small width; the harness forward is compared with
a reference computed from the arrays in the official framework's conventions."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness_plugins.methods.pose_transfer.def_gan import DefGAN, PoseInputs
from harness_plugins.shared.pose_maps import deform

h5py = pytest.importorskip("h5py")

SIZE = (64, 32)
WIDTH = 8
LEVELS = 6  # levels_for(64x32), as the official 128x64 generator


def standing(height: int, width: int, shift: float = 0.0) -> torch.Tensor:
    """18 COCO keypoints (y, x) of a person standing in a height×width image, arms moved by ``shift``."""
    unit = [(0.12, 0.5), (0.22, 0.5), (0.22, 0.35), (0.35, 0.3 - shift), (0.47, 0.28 - shift), (0.22, 0.65),
            (0.35, 0.7 + shift), (0.47, 0.72 + shift), (0.5, 0.4), (0.7, 0.4), (0.9, 0.38), (0.5, 0.6), (0.7, 0.6),
            (0.9, 0.62), (0.1, 0.45), (0.1, 0.55), (0.11, 0.4), (0.11, 0.6)]
    return torch.tensor([(y * (height - 1), x * (width - 1)) for y, x in unit], dtype=torch.float32)


# -- Def-GAN: the official Keras generator, written as Keras 2 would --------------------------------------------------

def keras_generator_layers(width: int, levels: int, rng: np.random.Generator) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """The layers of ``conditional_gan.make_generator`` (warp_skip mask, use_input_pose) in creation order, with
    Keras' automatic names (counters offset as if other models had been built first) and random weights in
    Keras' layouts; layers without weights are listed as Keras lists them, with no weights."""
    counters = {"conv2d": 4, "conv2d_transpose": 7, "instance_normalization": 2, "leaky_re_lu": 0, "activation": 0,
                "zero_padding2d": 0, "cropping2d": 0, "dropout": 0, "concatenate": 0, "affine_transform_layer": 0}
    layers: list[tuple[str, list[tuple[str, np.ndarray]]]] = []

    def add(kind: str, **weights: tuple[int, ...]) -> None:
        counters[kind] += 1
        name = f"{kind}_{counters[kind]}"
        scale = {"kernel": 0.1, "bias": 0.1, "gamma": 0.3, "beta": 0.2}
        arrays = [(f"{name}/{w}:0", (rng.standard_normal(shape) * scale[w] + (1.0 if w == "gamma" else 0.0)).astype("float32"))
                  for w, shape in weights.items()]
        layers.append((name, arrays))

    enc = [width * m for m in (1, 2, 4) + (8,) * (levels - 3)]
    dec = [width * m for m in (8,) * (levels - 3) + (4, 2)]
    for channels in (3 + 18, 18):
        if channels == 21:
            add("concatenate")
        add("conv2d", kernel=(3, 3, channels, enc[0]), bias=(enc[0],))
        for index in range(1, levels):
            add("leaky_re_lu")
            add("zero_padding2d")
            add("conv2d", kernel=(4, 4, enc[index - 1], enc[index]))
            if index < levels - 1:
                add("instance_normalization", gamma=(1,), beta=(1,))
    for _ in range(4):
        add("affine_transform_layer")
    for _ in range(levels):
        add("concatenate")
    skips = [2 * c for c in reversed(enc)]
    channels = skips[0]
    for index, out in enumerate(dec):
        if index:
            add("concatenate")
        add("activation")
        add("conv2d_transpose", kernel=(4, 4, out, channels))  # Conv2DTranspose: (h, w, out, in)
        add("cropping2d")
        add("instance_normalization", gamma=(1,), beta=(1,))
        if index < 3:
            add("dropout")
        channels = out + skips[index + 1]
    add("concatenate")
    add("activation")
    add("conv2d", kernel=(3, 3, channels, 3), bias=(3,))
    add("activation")
    return layers


def write_keras_h5(path: Path, layers: list[tuple[str, list[tuple[str, np.ndarray]]]], full_model: bool, seed: int = 0) -> None:
    """``model.save`` (``model_weights`` group) or ``model.save_weights`` (root) layout; ``layer_names`` in a
    shuffled order, standing for Keras' topological order, which the converter must not rely on."""
    order = list(layers)
    random.Random(seed).shuffle(order)
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = b"2.1.2"
        handle.attrs["backend"] = b"tensorflow"
        root = handle.create_group("model_weights") if full_model else handle
        if full_model:
            handle.attrs["model_config"] = b'{"class_name": "Model"}'
            handle.create_group("optimizer_weights")
        root.attrs["layer_names"] = np.array([name.encode() for name, _ in order])
        for name, arrays in order:
            group = root.create_group(name)
            group.attrs["weight_names"] = np.array([w.encode() for w, _ in arrays], dtype="S")
            for weight_name, array in arrays:
                group.create_dataset(weight_name, data=array)


def keras_weights(layers) -> dict[str, dict[str, np.ndarray]]:
    return {name: {w.rsplit("/", 1)[-1].split(":")[0]: a for w, a in arrays} for name, arrays in layers if arrays}


def nhwc_conv(x: torch.Tensor, kernel: np.ndarray, bias: np.ndarray | None, stride: int, pad: int) -> torch.Tensor:
    """Keras Conv2D on NHWC with an (h, w, in, out) kernel after symmetric zero padding: explicit sums over taps."""
    k = torch.from_numpy(kernel)
    x = F.pad(x, (0, 0, pad, pad, pad, pad))
    kh, kw = k.shape[:2]
    out_h, out_w = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = torch.zeros(x.shape[0], out_h, out_w, k.shape[3], dtype=torch.float64)
    for dy in range(kh):
        for dx in range(kw):
            patch = x[:, dy:dy + stride * out_h:stride, dx:dx + stride * out_w:stride, :]
            out += patch.double() @ k[dy, dx].double()
    return out + (torch.from_numpy(bias).double() if bias is not None else 0)


def nhwc_deconv(x: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Keras Conv2DTranspose (4×4, stride 2, 'valid', (h, w, out, in) kernel) then Cropping2D(1): every input
    pixel scatters its kernel-weighted values to the 4×4 window at twice its position."""
    k = torch.from_numpy(kernel).double()
    batch, height, width, _ = x.shape
    full = torch.zeros(batch, 2 * height + 2, 2 * width + 2, k.shape[2], dtype=torch.float64)
    for dy in range(4):
        for dx in range(4):
            full[:, dy:dy + 2 * height:2, dx:dx + 2 * width:2, :] += x.double() @ k[dy, dx].T
    return full[:, 1:-1, 1:-1, :]


def keras_instance_norm(x: torch.Tensor, gamma: np.ndarray, beta: np.ndarray) -> torch.Tensor:
    """keras-contrib InstanceNormalization(axis=None): (x − mean) / (std + 1e-3) over (H, W, C), scalar affine."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.var(dim=(1, 2, 3), unbiased=False, keepdim=True).sqrt()
    return (x - mean) / (std + 1e-3) * float(gamma[0]) + float(beta[0])


def keras_reference(weights: dict[str, dict[str, np.ndarray]], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The official generator's forward in NHWC from the Keras arrays (layers taken by creation counter)."""
    convs = sorted((n for n in weights if n.startswith("conv2d_") and not n.startswith("conv2d_transpose")),
                   key=lambda n: int(n.rsplit("_", 1)[1]))
    deconvs = sorted((n for n in weights if n.startswith("conv2d_transpose")), key=lambda n: int(n.rsplit("_", 1)[1]))
    norms = sorted((n for n in weights if n.startswith("instance_normalization")), key=lambda n: int(n.rsplit("_", 1)[1]))
    nhwc = lambda t: t.permute(0, 2, 3, 1).double()

    def encoder(x: torch.Tensor) -> list[torch.Tensor]:
        first = weights[convs.pop(0)]
        out = nhwc_conv(x, first["kernel"], first["bias"], 1, 1)
        features = [out]
        for level in range(1, LEVELS):
            out = nhwc_conv(F.leaky_relu(out, 0.2), weights[convs.pop(0)]["kernel"], None, 2, 1)
            if level < LEVELS - 1:
                norm = weights[norms.pop(0)]
                out = keras_instance_norm(out, norm["gamma"], norm["beta"])
            features.append(out)
        return features

    app = encoder(torch.cat([nhwc(inputs["source"]), nhwc(inputs["source_maps"])], -1))
    pose = encoder(nhwc(inputs["target_maps"]))
    skips = []
    for level, (a, p) in enumerate(zip(app, pose)):
        if level < 4:  # AffineTransformLayer: the harness' shared deform (pose geometry, not weights)
            a = deform(a.permute(0, 3, 1, 2), inputs["theta"].double(), inputs["valid"], inputs["masks"].double(),
                       "nearest").permute(0, 2, 3, 1)
        skips.append(torch.cat([a, p], -1))
    skips = skips[::-1]
    out = skips[0]
    for index in range(LEVELS - 1):
        out = nhwc_deconv(torch.relu(out), weights[deconvs.pop(0)]["kernel"])
        norm = weights[norms.pop(0)]
        out = torch.cat([keras_instance_norm(out, norm["gamma"], norm["beta"]), skips[index + 1]], -1)
    last = weights[convs.pop(0)]
    out = torch.tanh(nhwc_conv(torch.relu(out), last["kernel"], last["bias"], 1, 1))
    assert not convs and not deconvs and not norms
    return out.permute(0, 3, 1, 2)


def def_gan_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    source_pose, target_pose = standing(*SIZE)[None], standing(*SIZE, shift=0.12)[None]
    pose = PoseInputs(SIZE, 6.0)(source_pose, target_pose)
    return {"source": torch.rand(1, 3, *SIZE, generator=generator) * 2 - 1, **pose}


@pytest.mark.parametrize("full_model", [True, False], ids=["model.save", "save_weights"])
def test_def_gan_imports_the_official_keras_generator(cli, tmp_path, full_model) -> None:
    layers = keras_generator_layers(WIDTH, LEVELS, np.random.default_rng(1))
    source = tmp_path / "epoch_089_generator.h5"
    write_keras_h5(source, layers, full_model)
    out = tmp_path / "def-gan.safetensors"
    code, stdout, stderr = cli("weights", "import", "def-gan", source, "--option", f"width={WIDTH}",
                               "--option", f"size={SIZE[0]}x{SIZE[1]}", "--out", out, "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["tensors"] == len(DefGAN(width=WIDTH).build().state_dict())

    inputs = def_gan_inputs()
    method = DefGAN(width=WIDTH, size=f"{SIZE[0]}x{SIZE[1]}")
    method.load(out, "cpu")
    args = [inputs[k] for k in ("source", "source_maps", "target_maps", "theta", "valid", "masks")]
    with torch.no_grad():
        harness_out = method.model(*args)
    reference = keras_reference(keras_weights(layers), inputs)
    assert harness_out.shape == (1, 3, *SIZE)
    assert (harness_out.double() - reference).abs().max() < 1e-4
    assert reference.std() > 0.05  # not a saturated or constant image

    # `harness run --checkpoint FILE.h5` converts while loading: the same weights.
    direct = DefGAN(width=WIDTH, size=f"{SIZE[0]}x{SIZE[1]}")
    direct.load(source, "cpu")
    with torch.no_grad():
        assert torch.equal(direct.model(*args), harness_out)
    assert direct.is_official_file(source)


def test_def_gan_refuses_a_generator_of_another_width(cli, tmp_path) -> None:
    source = tmp_path / "generator.h5"
    write_keras_h5(source, keras_generator_layers(WIDTH, LEVELS, np.random.default_rng(2)), full_model=True)
    code, _, stderr = cli("weights", "import", "def-gan", source, "--option", f"width={2 * WIDTH}",
                          "--option", f"size={SIZE[0]}x{SIZE[1]}", "--out", tmp_path / "x.safetensors")
    assert code == 2
    assert "conv2d_5" in stderr and "appearance.blocks.0.weight" in stderr and "width" in stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_def_gan_refuses_a_file_of_other_layers(cli, tmp_path) -> None:
    source = tmp_path / "discriminator.h5"
    write_keras_h5(source, [("dense_1", [("dense_1/kernel:0", np.zeros((4, 1), "float32"))])], full_model=True)
    code, _, stderr = cli("weights", "import", "def-gan", source, "--out", tmp_path / "x.safetensors")
    assert code == 2 and "dense_1" in stderr


# -- SPT: the official demo's appearance generator (PyTorch, its own key names) ---------------------------------------

SPT_SIZE = 64  # progressive: multiples of 64


def spt_demo_state(w: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``Local_Generator`` (GlobalLocalPRDemo_models) at base width ``w`` (the demo: 64), random weights, its key names."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.1
    norm = lambda: {"weight": 1 + rand(1) * 3, "bias": rand(1) * 2}
    enc, dec = (w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w), (8 * w, 8 * w, 8 * w, 4 * w, 2 * w)
    state: dict[str, torch.Tensor] = {}
    for name, channels in (("encoder_app", 3 + 9 + 18), ("encoder_pose", 18 + 9)):
        prefix = f"model_global.{name}.net."
        state[prefix + "0.weight"], state[prefix + "0.bias"] = rand(w, channels, 3, 3), rand(w)
        for i in range(1, 6):
            state[f"{prefix}{i}.net.1.weight"] = rand(enc[i], enc[i - 1], 4, 4)  # bias-free, also the last block
            if i < 5:
                state.update({f"{prefix}{i}.net.2.{k}": v for k, v in norm().items()})
        local = f"model_local_{name}.net."
        state[local + "0.weight"], state[local + "0.bias"] = rand(w // 2, channels, 3, 3), rand(w // 2)
        state[local + "1.net.1.weight"] = rand(w, w // 2, 4, 4)
        state.update({f"{local}1.net.2.{k}": v for k, v in norm().items()})
    channels = 2 * enc[-1]
    for i, out in enumerate(dec):
        state[f"model_global.decoder.net.{i}.net.1.weight"] = rand(channels, out, 4, 4)  # ConvTranspose2d: (in, out, h, w)
        state.update({f"model_global.decoder.net.{i}.net.2.{k}": v for k, v in norm().items()})
        channels = out + 2 * enc[-(i + 2)]
    state["model_global.decoder.net.6.weight"], state["model_global.decoder.net.6.bias"] = rand(3, 2 * w + 2 * w, 3, 3), rand(3)
    state["model_local_decoder.net.0.net.1.weight"] = rand(2 * w + 2 * w, w, 4, 4)
    state.update({f"model_local_decoder.net.0.net.2.{k}": v for k, v in norm().items()})
    state["model_local_decoder.net.2.weight"], state["model_local_decoder.net.2.bias"] = rand(3, w + w, 3, 3), rand(3)
    return state


def demo_norm(x: torch.Tensor, s: dict, key: str) -> torch.Tensor:
    """InstanceNorm3d(1, eps=1e-3, affine) on x.unsqueeze(1): one mean and biased variance over (C, H, W)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = x.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / (var + 1e-3).sqrt() * s[key + ".weight"] + s[key + ".bias"]


def demo_block(x: torch.Tensor, s: dict, key: str, down: bool, norm: bool = True) -> torch.Tensor:
    if down:
        x = F.conv2d(F.leaky_relu(x, 0.2), s[key + ".net.1.weight"], stride=2, padding=1)
    else:  # ConvTranspose2d without padding, then Cropping2D(1)
        x = F.conv_transpose2d(torch.relu(x), s[key + ".net.1.weight"], stride=2)[:, :, 1:-1, 1:-1]
    return demo_norm(x, s, key + ".net.2") if norm else x


def demo_reference(s: dict, full: tuple, half: tuple) -> torch.Tensor:
    """The demo's ``Local_Generator.forward`` at ``fade_in_alpha`` 1 (its test setting), written from its key names.
    ``full``/``half``: (image, S_s one-hot, p_s, S_t one-hot, p_t, warp) at 64 and 32 pixels."""
    def streams(level: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        image, parsing_s, pose_s, parsing_t, pose_t, _ = level
        return torch.cat([image, parsing_s[:, 1:], pose_s], 1), torch.cat([pose_t, parsing_t[:, 1:]], 1)

    local = []
    for name, x in zip(("encoder_app", "encoder_pose"), streams(full)):
        first = F.conv2d(x, s[f"model_local_{name}.net.0.weight"], s[f"model_local_{name}.net.0.bias"], padding=1)
        local.append([first, demo_block(first, s, f"model_local_{name}.net.1", down=True)])
    skips = []
    global_features = []
    for stream, name in enumerate(("encoder_app", "encoder_pose")):
        out = local[stream][1]  # (1 − alpha)·conv(x) + alpha·fade feature, alpha = 1
        features = [out]
        for i in range(1, 6):
            out = demo_block(out, s, f"model_global.{name}.net.{i}", down=True, norm=i < 5)
            features.append(out)
        global_features.append(features)
    warp_half = half[5]
    for level, (a, p) in enumerate(zip(*global_features)):
        skips.append(torch.cat([warp_half(a) if level < 4 else a, p], 1))
    out = demo_block(skips[5], s, "model_global.decoder.net.0", down=False)
    for i in range(1, 5):
        out = demo_block(torch.cat([out, skips[5 - i]], 1), s, f"model_global.decoder.net.{i}", down=False)
    local_top = torch.cat([out, skips[0]], 1)
    local_first = torch.cat([full[5](local[0][0]), local[1][0]], 1)
    out = demo_block(local_top, s, "model_local_decoder.net.0", down=False)
    out = F.conv2d(torch.relu(torch.cat([out, local_first], 1)), s["model_local_decoder.net.2.weight"],
                   s["model_local_decoder.net.2.bias"], padding=1)
    return torch.tanh(out)


def spt_sample() -> dict:
    g = torch.Generator().manual_seed(3)
    labels = lambda: torch.randint(0, 10, (SPT_SIZE // 8, SPT_SIZE // 8), generator=g).repeat_interleave(8, 0).repeat_interleave(8, 1)
    return {"id": "a___b", "source": torch.rand(3, SPT_SIZE, SPT_SIZE, generator=g), "source_pose": standing(SPT_SIZE, SPT_SIZE),
            "target_pose": standing(SPT_SIZE, SPT_SIZE, shift=0.1), "source_parsing": labels(), "target_parsing": labels()}


DEMO_OPTIONS = ("--option", "progressive=true", "--option", "background=false", "--option", "target_map=dataset")


def test_spt_imports_the_official_demo_generator(cli, tmp_path) -> None:
    from harness_plugins.methods.pose_transfer.spt import SPT

    width = 8
    state = spt_demo_state(width)
    source = tmp_path / "latest_net_G.pth"
    torch.save(state, source)
    out = tmp_path / "spt-demo.safetensors"
    code, stdout, stderr = cli("weights", "import", "spt", source, *DEMO_OPTIONS, "--option", f"width={width}", "--out", out)
    assert code == 0, stderr

    method = SPT(width=width, progressive=True, background=False, target_map="dataset")
    method.load(out, "cpu")
    assert method.model.hs is None and method.model.bg is None and float(method.model.fg.alpha) == 1.0
    sample = spt_sample()
    tensors = [t[None] for t in method.inputs(sample)]
    produced = method.transfer(*tensors)[0]

    # The reference: the demo's forward from its own key names, on the same pose inputs and warps.
    full, half = tensors[:10], tensors[10:]
    level = lambda t: (t[0], t[1], t[2], t[9], t[4], lambda f: deform(f, t[6], t[7], t[8]))
    reference = ((demo_reference(state, level(full), level(half)) + 1) / 2).clamp(0, 1)[0]
    assert produced.shape == (3, SPT_SIZE, SPT_SIZE)
    assert (produced - reference).abs().max() < 1e-4
    assert reference.std() > 0.05


def test_spt_demo_weights_need_the_demo_setting(cli, tmp_path) -> None:
    source = tmp_path / "latest_net_G.pth"
    torch.save(spt_demo_state(8), source)
    code, _, stderr = cli("weights", "import", "spt", source, "--option", "width=8", "--out", tmp_path / "x.safetensors")
    assert code == 2 and "target_map=dataset" in stderr and "progressive=true" in stderr
    code, stdout, _ = cli("info", "spt")
    assert code == 0 and "latest_net_G.pth" in stdout and "no H_S" in stdout and "target_map=dataset" in stdout


# -- PG²: a route, no reader; the PyTorch releases the translation and re-id methods already loaded -------------------

def test_pg2_names_the_route_for_its_tensorflow_checkpoints(cli, tmp_path) -> None:
    code, stdout, _ = cli("info", "pg2")
    assert code == 0
    line = next(text for text in stdout.splitlines() if text.startswith("official weights:"))
    assert "TensorFlow" in line and "NewCheckpointReader" in line and ".npz" in line and "Market1501.zip" in line
    checkpoint = tmp_path / "model.ckpt-100000.index"
    checkpoint.write_bytes(b"\0")
    code, _, stderr = cli("weights", "import", "pg2", checkpoint, "--out", tmp_path / "x.safetensors")
    assert code == 2 and "without the original framework" in stderr


def test_cyclegan_and_unit_import_their_official_files(cli, tmp_path) -> None:
    from harness_plugins.methods.translation.cyclegan import CycleGAN
    from harness_plugins.methods.translation.unit import UNIT

    cyclegan = CycleGAN(ngf=8, blocks=1).build()
    state = dict(cyclegan.state_dict())
    state["model.2.running_mean"] = torch.zeros(8)  # a PyTorch < 0.4 InstanceNorm statistic, as old releases carry
    torch.save(state, tmp_path / "latest_net_G.pth")
    code, stdout, stderr = cli("weights", "import", "cyclegan", tmp_path / "latest_net_G.pth", "--option", "ngf=8",
                               "--option", "blocks=1", "--out", tmp_path / "cyclegan.safetensors", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["tensors"] == len(cyclegan.state_dict())

    options = {"dim": 8, "n_res": 1, "n_downsample": 1}
    pair = UNIT(**options).build()
    official = {domain: {k.split(".", 1)[1]: v for k, v in pair.state_dict().items() if k.startswith(domain + ".")}
                for domain in ("a", "b")}
    torch.save(official, tmp_path / "gen_00001000.pt")
    flags = [arg for key, value in options.items() for arg in ("--option", f"{key}={value}")]
    code, stdout, stderr = cli("weights", "import", "unit", tmp_path / "gen_00001000.pt", *flags,
                               "--out", tmp_path / "unit.safetensors", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["tensors"] == len(pair.state_dict())


def test_hi_cmd_converts_its_official_pair(tmp_path) -> None:
    from harness import UsageError
    from harness_plugins.methods.reid.hi_cmd import HiCMD

    net = HiCMD().build()
    state = net.state_dict()
    part = lambda prefix: {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    gen_ir = {**part("gen_IR."), **{"dec." + k: v for k, v in part("gen_RGB.dec.").items()}}  # the official b repeats the shared decoder
    torch.save({"a": part("gen_RGB."), "b": gen_ir}, tmp_path / "gen_00000005.pt")
    torch.save({"id": part("id_classifier."), "backbone_pro": part("backbone_pro."),
                "combine_weight": part("combine_weight.")}, tmp_path / "id_00000005.pt")
    converted = HiCMD().convert_official(tmp_path / "gen_00000005.pt")
    net.load_state_dict(converted, strict=True)
    assert HiCMD().is_official_file(tmp_path / "gen_00000005.pt")
    with pytest.raises(UsageError, match="classes=206"):
        HiCMD(classes=100).convert_official(tmp_path / "id_00000005.pt")
