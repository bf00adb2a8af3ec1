"""`tunecb report --format html` and `--plots DIR`: a self-contained page, opened offline in a
real headless Chromium, and plots that render (or say why not) for odd studies."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic import make_big_study

from tunecb.reporting.data.records import study_records
from tunecb.reporting.html.page import html_report
from tunecb.reporting.plots.study import render_plots

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "results" / "test-screenshots"  # git-ignored; look at them after a run
PLOT_NAMES = ["history", "learning_curves", "importance", "slices", "timeline"]

HARNESS = """<!doctype html><html><body>
<iframe id="f" src="report.html" style="width:1200px;height:900px"></iframe>
<pre id="result">pending</pre>
<script>
document.getElementById('f').addEventListener('load', () => {
  const d = document.getElementById('f').contentDocument;
  const images = Array.from(d.images).map(i => ({alt: i.alt, complete: i.complete,
    width: i.naturalWidth, height: i.naturalHeight}));
  const rows = Array.from(d.querySelectorAll('#trials-table tbody tr'))
    .map(r => r.cells[1].textContent);
  const skipped = Array.from(d.querySelectorAll('figure.skipped')).map(f => f.id);
  const trials = () => Array.from(d.querySelectorAll('#trials-table tbody tr'))
    .map(r => r.cells[1].textContent);
  const header = Array.from(d.querySelectorAll('#trials-table th'))
    .find(th => th.textContent === 'trial');
  header.click();
  const ascending = trials();
  header.click();
  const descending = trials();
  document.getElementById('result').textContent = JSON.stringify(
    {title: d.title, images, rows, skipped, summary: d.getElementById('summary').innerText,
     ascending, descending});
});
</script></body></html>
"""


FRONT_HARNESS = """<!doctype html><html><body>
<iframe id="f" src="report.html" style="width:1200px;height:900px"></iframe>
<pre id="result">pending</pre>
<script>
document.getElementById('f').addEventListener('load', () => {
  const d = document.getElementById('f').contentDocument;
  const figures = Array.from(d.querySelectorAll('figure')).map(f => {
    const i = f.querySelector('img');
    return {id: f.id, skipped: f.classList.contains('skipped'),
      caption: (f.querySelector('figcaption') || {}).textContent || '',
      loaded: !!i && i.complete && i.naturalWidth > 100 && i.naturalHeight > 100};
  });
  const head = Array.from(d.querySelectorAll('#trials-table th')).map(th => th.textContent);
  const at = head.indexOf('front');
  const front = Array.from(d.querySelectorAll('#trials-table tbody tr'))
    .map(r => r.cells[at].textContent);
  document.getElementById('result').textContent = JSON.stringify({figures, head, front});
});
</script></body></html>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    message = "no Chromium: apt-get install chromium (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_chromium(tmp: Path, *args: str) -> str:
    cmd = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: any download would fail
        f"--user-data-dir={tmp / 'chromium-profile'}", *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_html_report_opens_offline_in_chromium(finished_study, cli, tmp_path):
    page = tmp_path / "report.html"
    code, out, err = cli("report", finished_study, "--format", "html", "--output", page)
    assert code == 0, err
    assert "wrote 4 trials" in err
    text = page.read_text()
    # self-contained: no script, style, image or link from elsewhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert "url(http" not in text and "@import" not in text

    (tmp_path / "harness.html").write_text(HARNESS)
    dom = run_chromium(
        tmp_path,
        "--allow-file-access-from-files",
        "--dump-dom",
        (tmp_path / "harness.html").as_uri(),
    )
    found = json.loads(re.search(r'<pre id="result">(.*?)</pre>', dom, re.S).group(1))
    assert found["title"] == "tunecb report: fin"
    assert [i["alt"] for i in found["images"]] == [
        "Optimization history", "Learning curves", "Hyperparameter importance",
        "Value against each hyperparameter", "Trials per worker over time",
    ]  # fmt: skip
    for image in found["images"]:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image
    assert found["skipped"] == []
    report = study_records(finished_study)
    assert found["rows"] == [str(r["trial"]) for r in report.records]  # one row per trial, ranked
    assert found["ascending"] == ["0", "1", "2", "3"]  # a click on a header sorts by it
    assert found["descending"] == ["3", "2", "1", "0"]
    best = report.records[0]
    assert f"trial {best['trial']}:" in found["summary"] and "4 complete" in found["summary"]
    assert "Epochs trained" in found["summary"]

    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "report.png"
    run_chromium(
        tmp_path, "--hide-scrollbars", "--window-size=1280,3200", f"--screenshot={shot}",
        page.as_uri(),
    )  # fmt: skip
    width, height = png_size(shot.read_bytes())
    assert (width, height) == (1280, 3200)
    shutil.copy(page, SHOTS / "report.html")
    print(f"screenshot: {shot}")


def test_a_three_objective_report_opens_with_its_front_and_hypervolume(tmp_path, cli):
    """A study of 3 objectives (journal, no fit): the pairwise front and the hypervolume
    over time drawn in a real headless Chromium, the table with the front and a column per
    objective, the front first."""
    make_big_study(tmp_path / "mo3", 30, objectives=3)
    page = tmp_path / "report.html"
    code, _, err = cli("report", tmp_path / "mo3", "--format", "html", "--output", page)
    assert code == 0, err
    (tmp_path / "harness.html").write_text(FRONT_HARNESS)
    dom = run_chromium(tmp_path, "--allow-file-access-from-files", "--dump-dom",
                       (tmp_path / "harness.html").as_uri())  # fmt: skip
    found = json.loads(re.search(r'<pre id="result">(.*?)</pre>', dom, re.S).group(1))
    figures = {f["id"]: f for f in found["figures"]}
    assert list(figures)[:2] == ["plot-front", "plot-hypervolume"]
    for name in ("plot-front", "plot-hypervolume"):
        assert figures[name]["loaded"] and not figures[name]["skipped"], figures[name]
    assert "3 pairs of objectives" in figures["plot-front"]["caption"]
    assert "val_accuracy x params x latency_ms box" in figures["plot-hypervolume"]["caption"]
    assert "reference point (val_accuracy " in figures["plot-hypervolume"]["caption"]
    assert found["head"][:8] == ["rank", "trial", "state", "value", "front", "val_accuracy",
                                 "params", "latency_ms"]  # fmt: skip
    marks = [m == "True" for m in found["front"]]
    assert any(marks) and marks == sorted(marks, reverse=True)


def test_plots_written_as_png_files(finished_study, cli, tmp_path):
    code, out, err = cli(
        "report", finished_study, "--plots", tmp_path / "plots", "--top", "1", "--wide"
    )
    assert code == 0, err
    assert "wrote 5 plots to" in err
    assert len(out.strip().splitlines()) == 4  # the table still prints: 2 summary lines,
    # the header and 1 row
    assert sorted(p.stem for p in (tmp_path / "plots").iterdir()) == sorted(PLOT_NAMES)
    for name in PLOT_NAMES:
        width, height = png_size((tmp_path / "plots" / f"{name}.png").read_bytes())
        assert width >= 400 and height >= 150


def test_plots_folder_that_is_a_file_is_one_line_error(finished_study, cli, tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    code, out, err = cli("report", finished_study, "--plots", target)
    assert code == 2
    assert err.strip().count("\n") == 0 and "--plots" in err and "is a file" in err
    assert target.read_text() == "keep me"


def _plots(folder: Path) -> dict:
    return {p.name: p for p in render_plots(study_records(folder))}


def test_study_of_one_trial_says_why_importance_is_left_out(tmp_path):
    make_big_study(tmp_path / "one", 1, states=(1.0, 1.0))
    plots = _plots(tmp_path / "one")
    assert plots["importance"].png is None
    assert plots["importance"].skipped == "needs 2 or more complete trials; the study has 1"
    for name in ("history", "learning_curves", "slices", "timeline"):
        assert plots[name].png is not None, plots[name].skipped
    page = html_report(study_records(tmp_path / "one"))
    assert "Left out: needs 2 or more complete trials; the study has 1." in page


def test_study_of_failed_trials_only_still_renders(tmp_path):
    make_big_study(tmp_path / "failed", 6, states=(0.0, 0.0))
    plots = _plots(tmp_path / "failed")
    assert "no trial has a value" in plots["history"].skipped
    assert plots["importance"].skipped == "needs 2 or more complete trials; the study has 0"
    assert plots["slices"].skipped == "no complete trial has a value yet"
    assert plots["timeline"].png is not None
    page = html_report(study_records(tmp_path / "failed"))
    assert "none yet: no trial completed with a finite value" in page
    assert "6 fail" in page


@pytest.mark.slow
def test_study_of_2000_trials_and_4_workers_renders_every_plot(tmp_path):
    make_big_study(tmp_path / "big", 2000, workers=4)
    result = study_records(tmp_path / "big")
    plots = render_plots(result)
    assert [p.name for p in plots] == PLOT_NAMES
    assert all(p.png is not None for p in plots), [p.skipped for p in plots]
    assert "PED-ANOVA" in plots[2].caption  # fANOVA would take ~50 s here
    assert "4 worker processes" in plots[4].caption
    page = html_report(result, plots)
    assert page.count('<tr class="s-') == 2000
    assert "4 worker processes on 2 hosts" in page


def test_html_to_a_terminal_is_refused(finished_study, tmp_path):
    """A page of base64 images is not for a terminal: one line that says --output."""
    import pty

    code = (
        "import sys; from tunecb.cli import main; "
        f"sys.exit(main(['report', {str(finished_study)!r}, '--format', 'html']))"
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout is the pseudo-terminal
        os.execv(sys.executable, [sys.executable, "-c", code])
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2
    text = output.decode()
    assert "add --output report.html" in text and "Traceback" not in text


def test_values_from_the_study_are_escaped_in_the_page(tmp_path):
    """A categorical choice or study name is data, never markup."""
    import optuna

    from tunecb.oracle.ranking import trial_record
    from tunecb.reporting.data.records import StudyRecords

    choice = "<script>alert(1)</script>"
    study = optuna.create_study(direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"act": choice},
            distributions={"act": optuna.distributions.CategoricalDistribution([choice, "b"])},
            value=0.5,
        )
    )
    trials = study.get_trials()
    result = StudyRecords(
        name="<b>x</b>", direction="maximize", monitor="acc", study_dir=None,
        records=[trial_record(trials[0], None)],
        trials={0: trials[0]},
    )  # fmt: skip
    page = html_report(result, plots=[])
    assert "<script>alert" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
