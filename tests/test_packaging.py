"""A normal (non-editable) install works: the built wheel holds every file the package reads.

The wheel is built offline from a copy of the project (no build isolation, so no download: the
test extra brings setuptools and wheel), then (1) every file of the source package must be in it
and (2) the package imported from the unpacked wheel alone must load every packaged template.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "recranker"


def package_files() -> set[str]:
    """Every file of the source package except bytecode, as its path inside a wheel."""
    return {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(out), str(project)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("recranker-*.whl")
    return path


def test_the_wheel_holds_every_file_of_the_package(wheel) -> None:
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    missing = sorted(package_files() - shipped)
    assert not missing, f"left out of the wheel: {missing}"
    assert any(name.endswith("templates/movies/listwise.yaml") for name in shipped)


def test_the_installed_package_loads_its_templates(wheel, tmp_path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    script = (
        "import sys, recranker\n"
        "from pathlib import Path\n"
        f"assert Path(recranker.__file__).resolve().is_relative_to({str(site.resolve())!r}), recranker.__file__\n"
        "from recranker.prompts.templates import DOMAINS, load_templates\n"
        "print(sum(len(load_templates(d)) for d in DOMAINS))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == "9"
