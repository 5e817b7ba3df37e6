"""Print, one a line, requirements from pyproject.toml for an image's build.

    python3 python-deps.py PYPROJECT build               # [build-system] requires
    python3 python-deps.py PYPROJECT                     # the package's dependencies
    python3 python-deps.py PYPROJECT --only EXTRA ...    # the extras' requirements alone

The Dockerfiles install these in layers that depend on pyproject.toml alone, so a code
change rebuilds only the layer with our wheel. Standard library only: it runs on the
image's bare Python before anything is installed.
"""

import sys
import tomllib
from typing import Any


def requirements(pyproject: dict[str, Any], args: list[str]) -> list[str]:
    if args == ["build"]:
        return list(pyproject["build-system"]["requires"])
    project = pyproject["project"]
    if not args:
        return list(project["dependencies"])
    if args[0] != "--only":
        raise SystemExit(__doc__)
    extras = project.get("optional-dependencies", {})
    unknown = [e for e in args[1:] if e not in extras]
    if unknown:
        raise SystemExit(f"pyproject.toml has no extra {unknown}; it has {sorted(extras)}")
    return [r for e in args[1:] for r in extras[e]]


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        sys.stdout.write("".join(f"{r}\n" for r in requirements(tomllib.load(f), sys.argv[2:])))
