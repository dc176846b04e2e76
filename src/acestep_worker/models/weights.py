"""Loading tensors into modules: safetensors only, streamed, with every key accounted for."""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError

_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                   "xavier_uniform_", "xavier_normal_", "zeros_", "ones_", "constant_", "orthogonal_")


@contextmanager
def empty_modules(device: torch.device | str, dtype: torch.dtype) -> Iterator[None]:
    """Build modules directly on `device` in `dtype`, skipping random initialisation.

    Every parameter is overwritten by the checkpoint, so initialising 2-5 B parameters first would
    only cost time, and building in float32 before casting would double peak memory.
    """
    saved_init = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS}
    saved_dtype = torch.get_default_dtype()
    try:
        for name in _INIT_FUNCTIONS:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        torch.set_default_dtype(dtype)
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(saved_dtype)
        for name, fn in saved_init.items():
            setattr(torch.nn.init, name, fn)


def safetensors_files(folder: Path, stem: str = "model") -> list[Path]:
    """The weight files of a folder: `<stem>.safetensors`, or the shards its index lists."""
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as exc:
            raise CheckpointError(index, f"unreadable shard index: {exc}") from exc
        shards = [folder / name for name in sorted(set(weight_map.values()))]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise CheckpointError(folder, f"shards listed in {index.name} are missing: {missing}")
        return shards
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt*")):
        raise CheckpointError(folder, f"no {stem}.safetensors; pickled weights are never loaded")
    raise CheckpointError(folder, f"no {stem}.safetensors or {stem}.safetensors.index.json")


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
_MAX_HEADER_BYTES = 100_000_000


def iter_tensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (key, tensor) from safetensors files one tensor at a time, in file order.

    Each tensor is a read-only view of the memory-mapped file, not a copy: `load_into` then reads
    the bytes once, converting to the target dtype (and device) as it copies. Reading through
    `safetensors.safe_open` would first materialise every tensor in the file's dtype.
    """
    for path in files:
        try:
            yield from _mapped_tensors(path)
        except (ValueError, KeyError, TypeError, OSError, struct.error) as exc:
            raise CheckpointError(path, f"corrupt or unreadable safetensors file: {exc}") from exc


def _mapped_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """The safetensors layout: u64 little-endian header size, a JSON header, then the raw data."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        (header_bytes,) = struct.unpack("<Q", handle.read(8))
        if not 0 < header_bytes <= min(size - 8, _MAX_HEADER_BYTES):
            raise ValueError(f"header size {header_bytes} does not fit a {size}-byte file")
        header = json.loads(handle.read(header_bytes))
        # The map outlives this block: tensors yielded from it may still be referenced by the
        # caller, and the mapping closes when the last one is gone.
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    data_start = 8 + header_bytes
    entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                     key=lambda item: item[1]["data_offsets"][0])
    for key, entry in entries:
        dtype, shape = _DTYPES[entry["dtype"]], [int(n) for n in entry["shape"]]
        start, end = (int(n) for n in entry["data_offsets"])
        count = math.prod(shape)
        if end - start != count * dtype.itemsize or start < 0 or data_start + end > size:
            raise ValueError(f"tensor {key!r} has offsets {start}..{end} that do not fit its shape "
                             f"{shape} or the file")
        if count == 0:
            yield key, torch.empty(shape, dtype=dtype)
            continue
        with warnings.catch_warnings():  # read-only on purpose: the view is only ever copied from
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=data_start + start)
        yield key, flat.view(shape)


def verify_safetensors(folder: Path, stem: str = "model") -> list[Path]:
    """Open every weight file's header before a library loads it, so that a truncated, garbled or
    missing file is refused naming that file (libraries raise errors that name none)."""
    files = safetensors_files(folder, stem)
    for path in files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                handle.keys()
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(path, f"corrupt or unreadable safetensors file: {exc}") from exc
    return files


def pretrained(folder: Path, what: str, load: Callable[..., object], **kwargs) -> object:
    """`load(folder, **kwargs)` for a transformers model, refusing missing or mis-shaped weights:
    transformers would fill those with random values and the model would run and make noise."""
    files = verify_safetensors(folder)
    try:
        model, info = load(folder, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(folder, f"cannot load the {what}: {exc}") from exc
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing keys {_shorten(sorted(info['missing_keys']))}")
    if info.get("mismatched_keys"):
        problems.append(f"shape mismatches {_shorten([str(k) for k in info['mismatched_keys']])}")
    if problems:
        raise CheckpointError(files[0] if len(files) == 1 else folder,
                              f"the {what}'s weights do not match its config: " + "; ".join(problems))
    return model


def load_into(targets: dict[str, torch.Tensor], tensors: Iterator[tuple[str, torch.Tensor]],
              rename: Callable[[str], str], source: Path, optional: frozenset[str] = frozenset()) -> None:
    """Copy checkpoint tensors into `targets` (name -> parameter or buffer).

    `rename` maps a checkpoint key to a target name. Keys without a target, targets without a key
    (other than `optional` ones) and shape mismatches are errors naming the keys: a partial load
    would run and make noise instead of failing.
    """
    unexpected, mismatched, seen = [], [], set()
    with torch.no_grad():
        for key, tensor in tensors:
            name = rename(key)
            target = targets.get(name)
            if target is None:
                unexpected.append(key)
                continue
            if tuple(target.shape) != tuple(tensor.shape):
                mismatched.append(f"{key}: file {tuple(tensor.shape)} vs model {tuple(target.shape)}")
                continue
            target.copy_(tensor)
            seen.add(name)
    missing = sorted(set(targets) - seen - optional)
    problems = []
    if missing:
        problems.append(f"missing keys {_shorten(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_shorten(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches {_shorten(mismatched)}")
    if problems:
        raise CheckpointError(source, "weights do not match the config: " + "; ".join(problems))


def _shorten(items: list[str], limit: int = 8) -> str:
    head = ", ".join(items[:limit])
    return f"[{head}{', ... %d more' % (len(items) - limit) if len(items) > limit else ''}]"
