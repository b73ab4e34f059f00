"""A minimal writer of Lua Torch's binary serialisation (``torch.save``), for tests of Torch7 releases.

The format, as ``torch/File.lua`` writes it: every value starts with a little-endian int32 type tag (nil 0,
number 1, string 2, table 3, torch object 4, boolean 5). Numbers are float64; strings an int32 length and
the bytes; booleans an int32. Tables and torch objects carry an int32 reference index after the tag: the
first write of an object gives it a new index and its payload, a later write of the same object only the
tag and the index. A table's payload is an int32 count of pairs, then key and value of each. A torch
object's payload is a version string ("V 1", as int32 length + bytes, without a tag), its class name (the
same way), then what the class writes: nn modules a table of their fields; ``torch.FloatTensor`` an int32
dimension count, int64 sizes, int64 strides, an int64 1-based storage offset and its storage object (nil
for an empty tensor); ``torch.FloatStorage`` an int64 element count and the float32 elements.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

NIL, NUMBER, STRING, TABLE, TORCH, BOOLEAN = 0, 1, 2, 3, 4, 5


class T7Object:
    """A Lua torch class instance: ``fields`` is the table an nn module writes."""

    def __init__(self, class_name: str, fields: dict[str, Any] | None = None, version: int = 1) -> None:
        self.class_name, self.fields, self.version = class_name, fields or {}, version


class Writer:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.indices: dict[int, int] = {}
        self.count = 0
        self.keep: list[Any] = []  # objects written so far stay alive, so their ids stay unique

    def int(self, value: int) -> None:
        self.handle.write(struct.pack("<i", value))

    def long(self, value: int) -> None:
        self.handle.write(struct.pack("<q", value))

    def raw_string(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.int(len(data))
        self.handle.write(data)

    def reference(self, value: Any) -> bool:
        """Write the reference index; True when the object was written before (nothing more to write)."""
        known = id(value) in self.indices
        if not known:
            self.indices[id(value)] = self.new_index()
            self.keep.append(value)
        self.int(self.indices[id(value)])
        return known

    def new_index(self) -> int:
        self.count += 1
        return self.count

    def object(self, value: Any) -> None:
        if value is None:
            self.int(NIL)
        elif isinstance(value, bool):
            self.int(BOOLEAN)
            self.int(1 if value else 0)
        elif isinstance(value, (int, float)):
            self.int(NUMBER)
            self.handle.write(struct.pack("<d", float(value)))
        elif isinstance(value, (str, bytes)):
            self.int(STRING)
            self.raw_string(value)
        elif isinstance(value, (dict, list)):
            self.int(TABLE)
            if self.reference(value):
                return
            pairs = list(value.items()) if isinstance(value, dict) else [(i + 1, v) for i, v in enumerate(value)]
            self.int(len(pairs))
            for key, item in pairs:
                self.object(key)
                self.object(item)
        elif isinstance(value, np.ndarray):
            self.tensor(value)
        elif isinstance(value, T7Object):
            self.int(TORCH)
            if self.reference(value):
                return
            self.raw_string(f"V {value.version}")
            self.raw_string(value.class_name)
            self.object(value.fields)
        else:
            raise TypeError(f"cannot write {type(value).__name__}")

    def tensor(self, array: np.ndarray) -> None:
        self.int(TORCH)
        if self.reference(array):
            return
        self.raw_string("V 1")
        self.raw_string("torch.FloatTensor")
        data = np.ascontiguousarray(array, dtype="<f4")
        self.int(data.ndim)
        strides = [int(np.prod(data.shape[i + 1:], dtype=np.int64)) for i in range(data.ndim)]
        for number in (*data.shape, *strides):
            self.long(int(number))
        self.long(1)
        if data.size == 0:
            self.int(NIL)
            return
        self.int(TORCH)
        self.int(self.new_index())  # each tensor has a storage of its own (as util.save's clones do)
        self.raw_string("V 1")
        self.raw_string("torch.FloatStorage")
        self.long(data.size)
        self.handle.write(data.tobytes())


def save_t7(value: Any, path: Path) -> Path:
    """Write ``value`` (T7Object, dict, list, numpy float32 array, number, string, bool, None) to ``path``."""
    with open(path, "wb") as handle:
        Writer(handle).object(value)
    return Path(path)


def empty() -> np.ndarray:
    """The empty tensor Torch saves in a cleared module's ``output`` and ``gradInput``."""
    return np.zeros((0,), dtype=np.float32)
