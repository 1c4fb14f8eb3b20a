"""A tiny reader and writer of the safetensors format, for the tests (no safetensors
package on these machines).

Format: 8-byte little-endian unsigned header length N, then N bytes of JSON
({"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
optionally "__metadata__": {str: str}}), then the raw little-endian tensor bytes;
offsets are relative to the end of the header.

    load_file(path) -> {name: torch.Tensor}
    save_file({name: tensor}, path, metadata=None)
    load_metadata(path) -> {str: str}
"""
import json
import struct

import numpy as np
import torch

# dtype name -> (torch dtype, bytes per element)
_DTYPES = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
_NAMES = {v[0]: k for k, v in _DTYPES.items()}

# torch dtype -> numpy dtype of the same width used to move raw bytes (bf16 goes as int16)
_RAW = {
    torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16,
    torch.bfloat16: np.int16, torch.int64: np.int64, torch.int32: np.int32,
    torch.int16: np.int16, torch.int8: np.int8, torch.uint8: np.uint8, torch.bool: np.bool_,
}


def _read_header(data, path):
    if len(data) < 8:
        raise ValueError(f"{path}: file shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file size {len(data)}")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    return header, 8 + n


def load_metadata(path):
    with open(path, "rb") as f:
        data = f.read()
    header, _ = _read_header(data, path)
    return dict(header.get("__metadata__", {}) or {})


def load_file(path):
    """Read every tensor of a safetensors file into a dict of (CPU, owning) tensors."""
    with open(path, "rb") as f:
        data = f.read()
    header, start = _read_header(data, path)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype_name = info["dtype"]
        if dtype_name not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype_name}")
        dtype, size = _DTYPES[dtype_name]
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
        numel = 1
        for s in shape:
            numel *= s
        if end - begin != numel * size or begin < 0 or start + end > len(data):
            raise ValueError(f"{path}: tensor {name}: data_offsets {begin},{end} do not fit "
                             f"shape {shape} of {dtype_name} in a file of {len(data)} bytes")
        raw = np.frombuffer(data, dtype=np.dtype(_RAW[dtype]).newbyteorder("<"),
                            count=numel, offset=start + begin).copy()
        t = torch.from_numpy(raw.astype(_RAW[dtype], copy=False))
        if dtype == torch.bfloat16:
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(shape)
    return out


def save_file(tensors, path, metadata=None):
    """Write a dict of tensors (any device; stored contiguous, little-endian) to path."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _NAMES:
            raise ValueError(f"tensor {name}: unsupported dtype {t.dtype}")
        if t.dtype == torch.bfloat16:
            arr = t.view(torch.int16).numpy()
        else:
            arr = t.numpy()
        b = arr.astype(np.dtype(arr.dtype).newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # align the data to 8 bytes, as the format allows
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
