"""Small helpers shared by the benchmark scripts (run them from the repository root)."""

from __future__ import annotations

import shlex
import statistics
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # synthetic.py: a finished study without training


def foreign_tunecb() -> str | None:
    """Where the ``tunecb`` the benchmarks launch comes from, when it is not this checkout
    (another checkout's editable install, say), else ``None``: measure the code you have.

    >>> foreign_tunecb() is None or "imports tunecb from" in foreign_tunecb()
    True
    """
    found = subprocess.run(
        [sys.executable, "-c", "import tunecb; print(tunecb.__file__)"],
        cwd="/", capture_output=True, text=True, check=False,
    )  # fmt: skip
    origin = found.stdout.strip()
    if found.returncode == 0 and Path(origin).resolve().parent == ROOT / "tunecb":
        return None
    where = origin or found.stderr.strip().splitlines()[-1:]
    return (f"{sys.executable} imports tunecb from {where}, not {ROOT / 'tunecb'}; "
            f"run: pip install -e {ROOT} --no-deps")  # fmt: skip


def tunecb_command() -> list[str]:
    """The ``tunecb`` console script of this Python (not a pyenv shim), or ``-m tunecb``."""
    script = Path(sysconfig.get_path("scripts")) / "tunecb"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tunecb"]


def shown(path: Path) -> str:
    """``path`` relative to the repository root (the commands run from there)."""
    return str(path.relative_to(ROOT))


def cmdline(cmd: list[str]) -> str:
    """A command as one shell line; ``{placeholders}`` and ``<placeholders>`` left bare."""
    return " ".join(shlex.quote(a) if "{" not in a and "<" not in a else a for a in cmd)


def spread(values: list[float]) -> float:
    """(max - min) / median: how noisy repeats were."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else 0.0


def versions() -> dict[str, str]:
    """Installed versions of the packages that shape the figures."""
    found = {}
    for name in ("tensorflow", "tensorflow-cpu", "keras", "optuna", "tunecb", "pandas"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def machine(load_before: tuple[float, ...], load_after: tuple[float, ...]) -> dict:
    """What the figures were measured on, and how busy it was before and after."""
    import os
    import platform

    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions(),
        "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
        "loadavg_1_5_15_after": [round(x, 2) for x in load_after],
    }


def write_result(result: dict, path: Path, table: str) -> None:
    """Print the table and write the figures as JSON."""
    import json

    print()
    print(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path}; whole run {result['total_s']} s")


def run_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``cmd`` from the repository root; its wall time and stdout. Exits on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise SystemExit(f"failed (exit {proc.returncode}): {cmdline(cmd)}\n{tail}")
    return wall, proc.stdout
