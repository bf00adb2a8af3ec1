"""``import tunecb`` shows what it exports and nothing else, and every export is documented."""

from __future__ import annotations

from pathlib import Path

import tunecb


def test_dir_shows_only_the_exports():
    assert dir(tunecb) == sorted(tunecb.__all__)
    assert not {"Any", "TYPE_CHECKING", "annotations"} & set(dir(tunecb))


def test_every_export_is_named_in_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    undocumented = [n for n in tunecb.__all__ if n != "__version__" and n not in readme]
    assert not undocumented, f"exported but documented nowhere: {undocumented}"
