"""A cheap integrity check of ``.keras`` checkpoints, without loading a model (no Keras).

A ``.keras`` file is a zip holding ``metadata.json``, ``config.json`` and the weights
(``model.weights.h5``, or ``.npz``). A file truncated by a killed writer loses the zip's
central directory (at its end); a zero-byte file or one overwritten with something else is no
zip at all; Keras says "File not found" for all three. This check stats the file, opens the zip
directory, verifies the CRC of the two small JSON members and the weights' first bytes: about
0.1 ms a checkpoint, cached by size and modification time.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "best.keras"
>>> _ = path.write_text("hello")
>>> checkpoint_problem(path)
'not a zip archive: not a Keras checkpoint (text)'

A file's content is never quoted (the folder may be someone else's: a checkpoint linked to
``~/.env`` would show its first bytes), and a checkpoint that is a symbolic link leaving its
results folder (``<root>/trials/<n>/best.keras``) is not even opened: the problem names the
link and where it points.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from tunecb.results import StudyDir

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = ("model.weights.h5", "model.weights.npz")
_SIGNATURES = {"model.weights.h5": b"\x89HDF\r\n\x1a\n", "model.weights.npz": b"PK"}
_LOCAL_HEADER = b"PK\x03\x04"
_SMALL = 4 << 20  # members up to this size have their CRC checked (the JSON ones: a few KiB)
_cache: dict[str, tuple[tuple[int, int, int], str | None]] = {}


def checkpoint_problem(path: str | Path) -> str | None:
    """What is wrong with the ``.keras`` checkpoint ``path`` in a few words ("truncated zip
    (...)", "empty file (0 bytes)", "zip without config.json"), or ``None`` when it is sound.

    A structural check: a checkpoint it passes can still fail to load (weights damaged in
    place past their first bytes, layers safe loading refuses); ``load_best`` says so then.
    """
    path = Path(path)
    leaves = _link_out_of_results(path)
    if leaves is not None:
        return leaves
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    key = (st.st_size, st.st_mtime_ns, st.st_ino)
    cached = _cache.get(str(path))
    if cached is not None and cached[0] == key:
        return cached[1]
    problem = _inspect(path, st.st_size)
    _cache[str(path)] = (key, problem)
    return problem


def _inspect(path: Path, size: int) -> str | None:
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size  # this file's, if it was just replaced
            head = handle.read(64)
            if not head.startswith(_LOCAL_HEADER):
                return f"not a zip archive: not a Keras checkpoint ({_looks(head)})"
            try:
                with zipfile.ZipFile(handle) as archive:
                    infos = {info.filename: info for info in archive.infolist()}
            except (zipfile.BadZipFile, OSError, ValueError, EOFError):
                return f"truncated zip ({size} bytes, no central directory at its end)"
            return _members(handle, infos, size)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"


def _members(handle: BinaryIO, infos: dict[str, zipfile.ZipInfo], size: int) -> str | None:
    weights = next((name for name in WEIGHTS if name in infos), None)
    missing = [name for name in (CONFIG, METADATA) if name not in infos]
    if weights is None:
        missing.append(WEIGHTS[0])
    if missing:
        return f"zip without {' and '.join(missing)}: not a Keras checkpoint"
    for name in (METADATA, CONFIG, weights):
        info = infos[name]
        handle.seek(info.header_offset)
        header = handle.read(30)
        if len(header) < 30 or not header.startswith(_LOCAL_HEADER):
            return f"damaged zip (no local header for {name})"
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        data_start = info.header_offset + 30 + name_len + extra_len
        if data_start + info.compress_size > size:
            return f"truncated zip ({name} ends past the file's {size} bytes)"
        if info.compress_type != zipfile.ZIP_STORED:
            continue  # Keras stores its members; a recompressed file is checked by Keras
        handle.seek(data_start)
        if name == weights:
            start = handle.read(8)
            if info.file_size and not start.startswith(_SIGNATURES[name]):
                return f"damaged {name} (it does not start like one)"
        elif info.file_size <= _SMALL and zlib.crc32(handle.read(info.file_size)) != info.CRC:
            return f"damaged zip (bad CRC-32 of {name})"
    return None


def _looks(head: bytes) -> str:
    """What the start of a file is, for a message, without a byte of it: "text", "binary
    data"."""
    if b"\x00" in head:
        return "binary data"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    return "text"


def _link_out_of_results(path: Path) -> str | None:
    """How a checkpoint of a results folder (``R/trials/<n>/<file>``) leads out of ``R``
    through a link ("X is a symbolic link to Y, outside the results folder R; not read"),
    else ``None``."""
    if len(path.parents) < 3 or path.parents[1].name != "trials":
        return None
    try:
        leaves = StudyDir(path.parents[2]).leaves(path)
    except (OSError, RuntimeError):  # a loop of links, say: the stat that follows says it
        return None
    return None if leaves is None else f"{leaves}; not read"


__all__ = ["checkpoint_problem"]
