"""Load a ``.keras`` checkpoint on the backend Keras runs on here, whichever backend wrote it.

Keras names a few objects by the module of the backend that made them: a model compiled on
PyTorch stores its optimizer as ``keras.src.backend.torch.optimizers.torch_adam.Adam``, and
loading that file imports PyTorch, even in a process where Keras runs on TensorFlow (or where
PyTorch is not installed: "No module named 'torch'"; a CUDA build of torch imported after
TensorFlow dies of SIGSEGV). Such an object is a backend's private subclass of a public Keras
class of the same name (``keras.optimizers.Adam``): it is loaded as that public class, which
on this backend is what Keras itself would build. Nothing else about loading changes: safe
mode stays on.

>>> foreign_stand_ins({"module": "keras.src.backend.torch.optimizers.torch_adam",
...                    "class_name": "Adam", "registered_name": "Adam"}, "tensorflow")
{'Adam': ('keras.optimizers', 'Adam')}
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

CONFIG = "config.json"
_BACKEND_MODULES = "keras.src.backend."
# Where the public class of a backend's private one lives, by the private module's folder.
_PUBLIC = {"optimizers": "keras.optimizers", "optimizer": "keras.optimizers"}


def foreign_stand_ins(config: Any, backend: str) -> dict[str, tuple[str, str]]:
    """``{registered name: (public module, class name)}`` for every object in a checkpoint's
    ``config`` that names another backend's module than ``backend``'s."""
    found: dict[str, tuple[str, str]] = {}
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            module, name = item.get("module"), item.get("class_name")
            if isinstance(module, str) and isinstance(name, str):
                public = _public_module(module, backend)
                if public is not None:
                    found[str(item.get("registered_name") or name)] = (public, name)
            stack.extend(item.values())
    return found


def _public_module(module: str, backend: str) -> str | None:
    """The public module of a foreign backend's private ``module``, or None if it is not one."""
    if not module.startswith(_BACKEND_MODULES):
        return None
    parts = module[len(_BACKEND_MODULES) :].split(".")
    if len(parts) < 2 or parts[0] == backend:
        return None
    return _PUBLIC.get(parts[1])


def load_model(
    path: str | Path, *, custom_objects: dict[str, Any] | None = None, compile: bool = True
) -> Any:
    """``keras.saving.load_model(path, safe_mode=True)`` on this process's backend, with
    another backend's private classes loaded as their public ones (see the module's text).

    >>> model = load_model("results/digits/trials/0/best.keras")  # doctest: +SKIP
    """
    from tunecb.training.backends import import_quietly

    keras = import_quietly()
    stand_ins = _stand_ins(Path(path), str(keras.backend.backend()))
    return keras.saving.load_model(
        path,
        custom_objects={**stand_ins, **(custom_objects or {})},
        compile=compile,
        safe_mode=True,
    )


def archive_config(path: str | Path) -> Any:
    """The model config a ``.keras`` file holds (its ``config.json``), read without Keras;
    ``None`` when the file cannot be read so (Keras says what is wrong when it loads it).

    >>> archive_config("no/such/best.keras") is None
    True
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(CONFIG))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _stand_ins(path: Path, backend: str) -> dict[str, Any]:
    import importlib

    config = archive_config(path)
    if config is None:
        return {}
    found = {}
    for registered, (module, name) in foreign_stand_ins(config, backend).items():
        public = getattr(importlib.import_module(module), name, None)
        if public is not None:
            found[registered] = public
    return found
