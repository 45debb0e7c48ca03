"""The Makefile: `make help` lists every target, because every target has a `## what it does` line."""

from __future__ import annotations

import re
import subprocess


def targets(text: str) -> dict[str, str]:
    """target -> its rule line, for every named target (not $(STAMP), not VAR := ...)."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^([a-z][a-z-]*):(?!=).*$", text, re.M)}


def test_every_target_has_a_help_line_and_make_help_shows_it(repo_root):
    rules = targets((repo_root / "Makefile").read_text())
    assert {"help", "venv", "dev", "demo", "test", "lint", "clean"} <= set(rules)
    assert [name for name, line in rules.items() if "## " not in line] == []
    shown = subprocess.run(["make", "-s", "help"], cwd=repo_root, capture_output=True, text=True, timeout=30).stdout
    assert [name for name in rules if f"make {name} " not in shown] == []


def test_the_check_can_fail():
    assert [name for name, line in targets("a:  ## x\nb: a\nV := 1\n").items() if "## " not in line] == ["b"]
