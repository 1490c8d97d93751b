"""The code quality gates the README promises: mypy --strict and ruff on src/, exported names."""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import otward

ROOT = Path(__file__).parents[1]


def test_mypy_strict_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_is_clean():
    for command in (["ruff", "check", "src", "tests"], ["ruff", "format", "--check", "src"]):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_module_declares_what_it_exports():
    for module_info in pkgutil.walk_packages(otward.__path__, "otward."):
        if (
            module_info.ispkg
            or module_info.name.endswith(("__main__", ".env"))
            or ".migrations." in module_info.name
        ):
            continue
        module = importlib.import_module(module_info.name)
        if module_info.name.startswith("otward.cli."):
            continue  # Typer command modules export their `app`
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{module_info.name} has no __all__"
        for name in exported:
            assert hasattr(module, name), f"{module_info.name}.__all__ names missing {name}"


def test_core_does_no_io():
    """The core imports only the standard library, cryptography, pyasn1 (with its RFC modules) and itself.

    Also cedarpy (Cedar decides access in-process) and PyYAML (``safe_load`` of a string): both pure.
    """
    allowed = {"cryptography", "pyasn1", "pyasn1_alt_modules", "otward", "cedarpy", "yaml"}
    forbidden_stdlib = {"os", "socket", "sqlite3", "subprocess", "pathlib", "time", "random", "secrets"}
    for path in (ROOT / "src" / "otward" / "core").rglob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")) and not line.startswith("from __future__"):
                top = line.split()[1].split(".")[0]
                assert top not in forbidden_stdlib, f"{path.name}: {line}"
                if top not in sys.stdlib_module_names:
                    assert top in allowed, f"{path.name}: {line}"


def _imports(package: str) -> list[tuple[Path, str]]:
    """Every otward module imported by the modules of ``src/otward/<package>`` (also inside functions)."""
    found = []
    for path in (ROOT / "src" / "otward" / package).rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) > 1 and words[0] in {"import", "from"} and words[1].startswith("otward"):
                found.append((path, words[1]))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden", "why"),
    [
        ("edge", "otward.http", "the gatekeeper runs without the central web service's modules"),
        ("web", "otward.http", "what the web servers share knows no central service"),
        ("web", "otward.services", "what the web servers share knows no use case"),
        ("adapters", "otward.services", "an adapter implements a port and never depends on a use case"),
        ("core", "otward.services", "the core depends on nothing outside it"),
        ("core", "otward.console", "the core depends on nothing outside it"),
        ("services", "otward.console", "a use case knows no page"),
        ("adapters", "otward.console", "an adapter knows no page"),
        ("console", "otward.adapters", "a page reaches the database through the services and their stores"),
    ],
)
def test_imports_point_inwards(package, forbidden, why):
    wrong = [
        f"{path.relative_to(ROOT)}: {module}"
        for path, module in _imports(package)
        if module == forbidden or module.startswith(forbidden + ".")
    ]
    assert not wrong, f"{why}: {wrong}"
