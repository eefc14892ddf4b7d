"""Find Python 2.7 and install the pinned Autobahn testsuite for it, once.

The fuzzingserver only runs on Python 2.7.  Its packages go into a private folder
(``pip install --target``), never into an interpreter's site-packages, so nothing
outside ``compliance/`` changes.  The install is idempotent: a stamp file holds the
hash of the requirements file, and a changed file triggers a clean reinstall.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["EnvironmentError27", "ensure_installed", "find_python27"]

STAMP_NAME = ".installed-requirements-sha256"


class EnvironmentError27(RuntimeError):
    """Python 2.7 is missing or the testsuite could not be installed for it."""


def _is_python27(candidate: str) -> bool:
    try:
        out = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "2.7"


def find_python27(explicit: str | None = None) -> str:
    """Return a Python 2.7 interpreter: ``explicit``, $AUTOBAHN_PYTHON27, pyenv's, or PATH's."""
    if explicit:
        if _is_python27(explicit):
            return explicit
        raise EnvironmentError27(f"{explicit!r} is not a working Python 2.7 interpreter")
    candidates: list[str] = []
    env = os.environ.get("AUTOBAHN_PYTHON27")
    if env:
        candidates.append(env)
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "2.7*", "bin", "python")))
    candidates += [c for c in (shutil.which("python2.7"), shutil.which("python2")) if c]
    for candidate in candidates:
        if _is_python27(candidate):
            return candidate
    raise EnvironmentError27(
        "no Python 2.7 found (tried: "
        + (", ".join(candidates) or "nothing")
        + "); install one (e.g. `pyenv install 2.7.18`) or pass --python27 PATH"
    )


def _requirements_hash(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def ensure_installed(python27: str, target: Path, requirements: Path, log_path: Path) -> bool:
    """Install ``requirements`` into ``target`` unless already done; return True if installed.

    The packages are installed into a sibling ``.partial`` folder that is renamed into place
    only after pip succeeded, so an interrupted install never looks complete.
    """
    wanted = _requirements_hash(requirements)
    stamp = target / STAMP_NAME
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return False

    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [
        python27,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--target",
        str(partial),
        "-r",
        str(requirements),
    ]
    env = dict(os.environ, PIP_NO_PYTHON_VERSION_WARNING="1")
    with log_path.open("w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        result = subprocess.run(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False, timeout=1800
        )
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise EnvironmentError27(
            f"pip could not install {requirements.name} for Python 2.7 "
            f"(exit {result.returncode}); see {log_path}"
        )
    (partial / STAMP_NAME).write_text(wanted + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return True
