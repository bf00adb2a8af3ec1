"""README's map of the package (its Development section) names every folder and module of
``tunecb/``, and nothing that is not there: the map is kept in step with the tree, as the
settings reference is kept in step with the settings table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tunecb"


def _map_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Development\n", 1)[1]
    return section.split("```", 2)[1].splitlines()


def _without_notes(text: str) -> str:
    """``declaration (Study, ...) · settings`` -> ``declaration · settings`` (nested too)."""
    while True:
        shorter = re.sub(r"\([^()]*\)", "", text)
        if shorter == text:
            return text
        text = shorter


def readme_map() -> dict[str, set[str]]:
    """``{folder under tunecb/: module names the map gives it}``."""
    entries: dict[str, str] = {}
    folder = None
    for line in _map_block():
        head = re.match(r"^(tunecb/|  \S+/)\s+(.*)$", line)
        if head:
            name = head.group(1).strip()
            folder = "" if name == "tunecb/" else name.rstrip("/")
            entries[folder] = head.group(2)
        elif folder is not None and line.startswith("    "):
            entries[folder] += " " + line.strip()
        else:
            folder = None  # studies/, tests/, ...: not the package
    return {
        folder: {part.split()[0] for part in _without_notes(text).split("·") if part.split()}
        for folder, text in entries.items()
    }


def tree() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        folder = path.parent.relative_to(PACKAGE).as_posix()
        found.setdefault("" if folder == "." else folder, set())
        if path.stem != "__init__" or folder == ".":
            found["" if folder == "." else folder].add(path.stem)
    return found


def test_the_readme_map_names_every_folder_of_the_package():
    assert sorted(readme_map()) == sorted(tree())


def test_the_readme_map_names_every_module_and_none_that_is_gone():
    documented, actual = readme_map(), tree()
    for folder in sorted(actual):
        where = f"tunecb/{folder}/" if folder else "tunecb/"
        missing = actual[folder] - documented.get(folder, set())
        stale = documented.get(folder, set()) - actual[folder]
        assert not missing, f"README's map lacks {sorted(missing)} in {where}"
        assert not stale, f"README's map names {sorted(stale)} in {where}, which is not there"
