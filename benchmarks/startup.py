"""Start-up: seconds from launching ``tunecb search`` to its first trial starting, in this
process and with ``--jobs 2``, and to "nothing to run" on a study whose budget is spent.

Fresh processes of the console script, alternated, ``--repeats`` times (median and
spread); the first-trial moment is the ``trial_start`` event of ``--log-format json``.

    python benchmarks/startup.py            # 5 repeats, writes benchmarks/out/startup.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, spread, tunecb_command, write_result

STUDY = Path(__file__).resolve().parent / "overhead_study.py"


def first_trial_s(cmd: list[str], env: dict[str, str]) -> tuple[float, bool]:
    """Seconds until the first ``trial_start`` event (the process is then stopped), and
    whether TensorFlow was imported by the launcher before it (from ``-X importtime``)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env, start_new_session=True)  # fmt: skip
    try:
        for line in proc.stdout:
            if '"event": "trial_start"' in line:
                return time.perf_counter() - started, True
        raise RuntimeError(f"{cmd} ended without starting a trial")
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


PROBE = """
import sys
from tunecb.cli import main
code = main(sys.argv[1:])
tf = sys.modules.get("tensorflow")
print("TENSORFLOW", tf is not None and type(tf).__name__ != "_LazyModule")
raise SystemExit(code)
"""


def spent_s(args: list[str], env: dict[str, str]) -> tuple[float, bool]:
    """Seconds to say "nothing to run", and whether TensorFlow ran in that process (a
    lazily imported module that never ran does not count)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return took, "TENSORFLOW True" in proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(Path(__file__).parent / "out/startup.json"))
    args = parser.parse_args(argv)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    python = tunecb_command()
    load_before = os.getloadavg()
    begun = time.perf_counter()
    times: dict[str, list[float]] = {"in-process": [], "--jobs 2": [], "nothing to run": []}
    tf_imported = []
    with tempfile.TemporaryDirectory() as tmp:
        base = [*python, "search", str(STUDY), "--log-format", "json", "--n-trials", "50"]
        for i in range(args.repeats):
            for label, extra in (("in-process", ["--jobs", "0"]), ("--jobs 2", ["--jobs", "2"])):
                cmd = [*base, "--results", f"{tmp}/{label[:2]}{i}", *extra]
                times[label].append(first_trial_s(cmd, env)[0])
        spent = f"{tmp}/spent"
        subprocess.run([*python, "search", str(STUDY), "--results", spent, "--n-trials", "1",
                        "--epochs", "1", "-q"], check=True, env=env)  # fmt: skip
        cmd = ["search", str(STUDY), "--results", spent, "--n-trials", "1", "-q"]
        for _ in range(args.repeats):
            took, imported = spent_s(cmd, env)
            times["nothing to run"].append(took)
            tf_imported.append(imported)
    medians = {k: statistics.median(v) for k, v in times.items()}
    inline = medians["in-process"]
    rows = [
        f"| {label} | {medians[label]:.2f} s | {spread(v):.0%} | {medians[label] / inline:.2f} |"
        for label, v in times.items()
    ]
    table = "\n".join([
        f"start-up, median of {args.repeats} (ratio to the in-process start-up)",
        "| to | median | spread | / in-process |", "|---|---|---|---|", *rows,
        f"TensorFlow imported to say 'nothing to run': {any(tf_imported)}",
    ])  # fmt: skip
    result = {
        "seconds": times, "medians": medians, "tensorflow_imported_when_spent": any(tf_imported),
        "machine": machine(load_before, os.getloadavg()),
        "total_s": round(time.perf_counter() - begun, 1),
    }  # fmt: skip
    write_result(result, Path(args.output), table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
