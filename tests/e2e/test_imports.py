"""Where users wait, TensorFlow stays out: `import tunecb`, `tunecb --help`, `tunecb report`."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


HEAVY = "('tensorflow', 'keras', 'mlflow', 'wandb')"  # mlflow, wandb: only when tracking


def test_import_tunecb_does_not_import_tensorflow():
    proc = run_python(
        "import sys, tunecb\n"
        "s = tunecb.Study(monitor='val_accuracy')\n"
        f"print([m for m in {HEAVY} if m in sys.modules])"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_help_does_not_import_tensorflow():
    proc = run_python(
        "import sys\nfrom tunecb.cli import main\n"
        "code = main(['--help'])\n"
        f"print('MODULES', [m for m in {HEAVY} if m in sys.modules], code)"
    )
    assert proc.returncode == 0, proc.stderr
    assert "search" in proc.stdout and "report" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "MODULES [] 0"


def test_report_does_not_import_tensorflow(finished_study):
    proc = run_python(
        "import sys\nfrom tunecb.cli import main\n"
        f"code = main(['report', {str(finished_study)!r}, '--format', 'csv'])\n"
        f"print('MODULES', [m for m in {HEAVY} if m in sys.modules], code)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "MODULES [] 0"
    assert len(proc.stdout.strip().splitlines()) == 6  # header + 4 trials + MODULES


def test_html_report_and_plots_do_not_import_tensorflow(finished_study, tmp_path):
    page, plots = tmp_path / "r.html", tmp_path / "plots"
    proc = run_python(
        "import sys\nfrom tunecb.cli import main\n"
        f"code = main(['report', {str(finished_study)!r}, '--format', 'html', "
        f"'--output', {str(page)!r}, '--plots', {str(plots)!r}])\n"
        f"print('MODULES', [m for m in {HEAVY} if m in sys.modules], code)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "MODULES [] 0"
    assert page.stat().st_size > 10_000 and len(list(plots.glob("*.png"))) == 5


def test_report_dataframe_does_not_import_tensorflow(finished_study):
    proc = run_python(
        f"import sys, tunecb\ndf = tunecb.report({str(finished_study)!r})\n"
        f"print(len(df), [m for m in {HEAVY} if m in sys.modules])"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "4 []"


def test_the_tracker_s_copy_of_the_report_does_not_import_the_importance_evaluators(
    finished_study,
):
    """Drawn by `tunecb sync` for a tracker: without optuna.importance (1.6 s of CPU)."""
    proc = run_python(
        "import sys\nfrom tunecb.reporting.data.records import study_records\n"
        "from tunecb.reporting.html.page import html_report\n"
        "from tunecb.reporting.plots.study import TRACKER_LEAVES_OUT, render_plots\n"
        f"records = study_records({str(finished_study)!r})\n"
        "page = html_report(records, render_plots(records, leave_out=TRACKER_LEAVES_OUT))\n"
        "print([m for m in ('optuna.importance', 'sklearn', 'tensorflow') if m in sys.modules],"
        " 'tunecb report draws it' in page, page.count('<img'))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[] True 4"
