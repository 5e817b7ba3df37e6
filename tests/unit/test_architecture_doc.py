"""docs/architecture.md's contract tables are generated from the code and may not drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_contract_tables_match_the_code() -> None:
    out = subprocess.run([sys.executable, str(REPO / "hack" / "contracts.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_docs_cite_the_repo_not_a_document_outside_it() -> None:
    # The design lives in docs/architecture.md; a reference to a file beside the repo (the
    # team's shared folder) would be a dead link for every user.
    offenders = []
    for path in [*REPO.glob("docs/*.md"), REPO / "README.md", *REPO.glob("charts/**/*.yaml"),
                 *REPO.glob("*/tether_*/**/*.py")]:
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if "DESIGN.md" in line or "STYLE.md" in line or "../shared" in line:
                offenders.append(f"{path.relative_to(REPO)}:{no}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
