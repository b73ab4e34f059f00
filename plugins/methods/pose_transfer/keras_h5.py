"""Reading the weights of a Keras 2 ``.h5`` file (``model.save`` or ``model.save_weights``) without Keras.

Both layouts hold one HDF5 group per layer, listed by the attribute ``layer_names`` (at the file's root for
``save_weights``, in the group ``model_weights`` for ``save``); a layer's group lists its arrays in the
attribute ``weight_names`` (``conv2d_3/kernel:0``, ``instance_normalization_2/gamma:0``, ...), each array
stored under that path inside the layer's group. Layers without weights (activations, padding,
concatenation, custom layers such as Def-GAN's ``AffineTransformLayer``) are listed with no names.

Keras names an unnamed layer ``<class in snake case>_<N>``, N counting the layers of that class created
in the session (from 1; tf.keras leaves the first without a number), so sorting a class's layers by N
gives the order in which the model's code created them. ``layer_names`` itself is Keras' topological
order (by depth from the outputs), which interleaves parallel branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import DataError, UsageError

@dataclass(frozen=True)
class KerasLayer:
    name: str
    weights: dict[str, np.ndarray]
    """Arrays by short name (``kernel``, ``bias``, ``gamma``, ``beta``, ...), in the file's order."""

    def kind_and_uid(self, kinds: tuple[str, ...]) -> tuple[str, int] | None:
        """(class in snake case, creation counter) when the name is Keras' automatic one for one of ``kinds``."""
        for kind in sorted(kinds, key=len, reverse=True):  # conv2d_transpose before conv2d
            if self.name == kind:
                return kind, 0
            if self.name.startswith(kind + "_") and self.name[len(kind) + 1:].isdigit():
                return kind, int(self.name[len(kind) + 1:])
        return None


def _text(value: object) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_keras_layers(path: Path, owner: str) -> list[KerasLayer]:
    """The layers of a Keras ``.h5`` weights or model file that carry weights, in the file's order."""
    try:
        import h5py
    except ImportError:
        raise UsageError(f"{owner}: reading Keras .h5 weights needs h5py: pip install 'harness[official]'") from None
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not an HDF5 file ({exc}); expected a Keras .h5 weights or model file") from None
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in root.attrs:
            raise DataError(f"{path}: no 'layer_names' attribute at the root or in 'model_weights'; not a Keras 2 "
                            "weights file (model.save or model.save_weights)")
        layers = []
        for raw in root.attrs["layer_names"]:
            name = _text(raw)
            group = root[name]
            weights = {}
            for weight_raw in group.attrs.get("weight_names", []):
                weight_name = _text(weight_raw)
                short = weight_name.rsplit("/", 1)[-1].split(":", 1)[0]
                weights[short] = np.asarray(group[weight_name])
            if weights:
                layers.append(KerasLayer(name, weights))
    return layers
