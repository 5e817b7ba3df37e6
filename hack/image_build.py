"""Two steps of hack/images.sh that are easier in Python than in bash.

    image_build.py pip-conf OUT CA_PATH        # pip's settings for RUN steps, as one file
    image_build.py merge OUT VERSION LAYOUT...  # one OCI layout for `ctr images import`

pip-conf: the build's RUN steps reach PyPI the way this machine does. pip there sees
neither the host's /etc/pip.conf nor its PIP_* variables (build-args would be recorded
in the image's history), so hack/images.sh mounts one file at /etc/pip.conf for the
build only: the host's pip configuration files and PIP_* variables, in pip's own order
of precedence, with the certificate bundle pointed at CA_PATH (where the host's bundle
is mounted). Options naming host paths other than the bundle are left out: those paths
do not exist inside the build.

merge: the images are pushed in parallel, each to a layout of its own; merge hard-links
their blobs into OUT (a layer shared by several images is stored once) and names each
image for containerd, which names an imported manifest after its
io.containerd.image.name annotation: docker.io/tether/<name>:VERSION.
"""

from __future__ import annotations

import configparser
import json
import os
import sys
from pathlib import Path
from typing import Any

# pip's configuration files, lowest precedence first (pip's "site" file aside: the
# build has its own venvs); then PIP_* variables override them.
PIP_FILES = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf"),
             Path.home() / ".pip/pip.conf", Path.home() / ".config/pip/pip.conf"]
# Options whose value is a path on this machine (find-links=/opt/wheels, log files,
# caches...): meaningless inside the build.
HOST_PATH_OPTIONS = {"cert", "client-cert", "find-links", "cache-dir", "log", "log-file",
                     "src", "target", "prefix", "root", "config-file", "requirement",
                     "constraint", "build", "no-index"}


def pip_conf(ca_path: str) -> configparser.ConfigParser:
    conf = configparser.ConfigParser(interpolation=None)
    conf.read([str(p) for p in PIP_FILES])
    if not conf.has_section("global"):
        conf.add_section("global")
    for name, value in sorted(os.environ.items()):
        if name.startswith("PIP_") and name != "PIP_CONFIG_FILE":
            conf.set("global", name[4:].lower().replace("_", "-"), value)
    for section in conf.sections():
        for option in list(conf.options(section)):
            if option in HOST_PATH_OPTIONS:
                conf.remove_option(section, option)
    conf.set("global", "cert", ca_path)
    return conf


def named(index: dict[str, Any], version: str, where: Path) -> list[dict[str, Any]]:
    """The index's manifests, each named docker.io/tether/<name>:<version>."""
    out = []
    for manifest in index["manifests"]:
        name = manifest.get("annotations", {}).get("org.opencontainers.image.ref.name")
        if not name:
            raise SystemExit(f"{where}: a manifest has no ref.name; push with oci:DIR:NAME")
        ann = {**manifest["annotations"],
               "io.containerd.image.name": f"docker.io/tether/{name}:{version}"}
        out.append({**manifest, "annotations": ann})
    return out


def merge(out: Path, version: str, layouts: list[Path]) -> None:
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    manifests: list[dict[str, Any]] = []
    for layout in layouts:
        for blob in (layout / "blobs" / "sha256").iterdir():
            if not (blobs / blob.name).exists():
                os.link(blob, blobs / blob.name)
        manifests += named(json.loads((layout / "index.json").read_text()), version, layout)
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "pip-conf":
        out = Path(argv[1])
        out.touch(mode=0o600)  # it may hold an index URL's credentials
        with out.open("w") as f:
            pip_conf(argv[2]).write(f)
    elif len(argv) >= 4 and argv[0] == "merge":
        merge(Path(argv[1]), argv[2], [Path(a) for a in argv[3:]])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
