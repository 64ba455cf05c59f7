"""What ``pip install greendc`` puts on a machine: one top-level package, ``greendc``.

The layers keep their top-level folders in the repository but install as
``greendc.collector``, ``greendc.exporters``, ``greendc.dashboards`` and
``greendc.simulator`` (pyproject.toml's package-dir mapping). A generic top-level
``collector`` or ``exporters`` would clash with the PyPI distributions of those names.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("greendc-*.whl")
    return path


def test_the_wheel_has_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"greendc"}
    for module in (
        "greendc/app/cli.py",
        "greendc/collector/agent.py",
        "greendc/exporters/report/compute.py",
        "greendc/dashboards/build.py",
        "greendc/simulator/model.py",
        "greendc/data/emission_factors.yaml",
    ):
        assert module in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "greendc = greendc.app.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_a_fresh_environment_sees_only_greendc(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    py = env / "bin" / "python"
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    probe = (
        "import importlib.util as u\n"
        "for name in ('collector', 'exporters', 'dashboards', 'simulator'):\n"
        "    print(name, u.find_spec(name) is not None,"
        " u.find_spec('greendc.' + name) is not None)\n"
    )
    out = subprocess.run(
        [str(py), "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:4] == [
        "collector False True",
        "exporters False True",
        "dashboards False True",
        "simulator False True",
    ]
