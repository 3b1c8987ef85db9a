"""Reading and writing `.safetensors` files with NumPy only.

A `.safetensors` file is an 8-byte little-endian header length, a JSON
header naming every tensor's dtype, shape and byte range, and the raw
little-endian tensor bytes. Hugging Face `transformers` stores model
weights this way. Reading needs no extra package; `bfloat16` tensors
(common on the Hub) are widened to `float32`, which is exact.
"""

import json
import os
import struct

import numpy as np


class SafetensorsError(ValueError):
    """A `.safetensors` file is truncated, malformed or of an unknown dtype."""


_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened to float32 after reading
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def _bfloat16_to_float32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path):
    """Returns `(arrays, metadata)` of a `.safetensors` file.

    Args:
        path: path of the file.

    Returns:
        A dict of NumPy arrays by tensor name, and the header's
        `__metadata__` dict (empty when absent).

    Example:
    ```python
    arrays, _ = read_safetensors("model.safetensors")
    arrays["temperature"]
    ```
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weights file not found: {path}")
    with open(path, "rb") as file:
        data = file.read()
    if len(data) < 8:
        raise SafetensorsError(f"{path} is truncated: no safetensors header.")
    (header_size,) = struct.unpack("<Q", data[:8])
    if 8 + header_size > len(data):
        raise SafetensorsError(
            f"{path} is truncated: its header needs {header_size} bytes."
        )
    try:
        header = json.loads(data[8 : 8 + header_size])
    except ValueError as error:
        raise SafetensorsError(
            f"{path} is not a safetensors file: unreadable header ({error})."
        ) from error
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path} is not a safetensors file.")
    metadata = header.pop("__metadata__", None) or {}
    body = memoryview(data)[8 + header_size :]
    arrays = {}
    for name, entry in header.items():
        dtype_name = entry.get("dtype")
        if dtype_name not in _DTYPES:
            raise SafetensorsError(
                f"{path}: tensor '{name}' has dtype {dtype_name!r}, which "
                f"keras-tips cannot read (supported: {sorted(_DTYPES)})."
            )
        begin, end = entry["data_offsets"]
        shape = tuple(int(d) for d in entry["shape"])
        dtype = _DTYPES[dtype_name]
        if end > len(body) or end - begin != dtype.itemsize * int(
            np.prod(shape, dtype=np.int64)
        ):
            raise SafetensorsError(
                f"{path}: tensor '{name}' ({dtype_name} {shape}) does not fit "
                "its byte range; the file is truncated or corrupt."
            )
        array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
        if dtype_name == "BF16":
            array = _bfloat16_to_float32(array)
        arrays[name] = np.array(array)  # own the memory, native byte order
    return arrays, metadata


def write_safetensors(path, arrays, metadata=None):
    """Writes NumPy arrays to a `.safetensors` file.

    Args:
        path: path of the file to write.
        arrays: dict of NumPy arrays (float16/32/64, integer or bool) by
            tensor name.
        metadata: optional dict of string to string, stored under
            `__metadata__` (`transformers` writes `{"format": "pt"}`).

    Example:
    ```python
    write_safetensors("model.safetensors", {"w": np.ones((2, 3), "float32")},
                      metadata={"format": "pt"})
    ```
    """
    header = {}
    chunks = []
    offset = 0
    for name in sorted(arrays):
        array = np.asarray(arrays[name])  # tobytes() is C-ordered
        if array.dtype not in _NAMES:
            raise SafetensorsError(
                f"Cannot write tensor '{name}' of dtype {array.dtype} to "
                "safetensors."
            )
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # 8-byte aligned tensor data
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(encoded)))
        file.write(encoded)
        for raw in chunks:
            file.write(raw)
