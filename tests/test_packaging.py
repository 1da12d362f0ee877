"""What a user installing from an index gets: version, extras, entry points, changelog.

The wheel itself is built, installed into a fresh environment and run by
``make test-wheel`` (tools/test_wheel.sh): minutes, so not part of this suite.
"""

import importlib.metadata
import re
from pathlib import Path

import pytest

import vissparse

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_has_one_source():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "vissparse.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", vissparse.__version__)
    assert importlib.metadata.version("vissparse") == vissparse.__version__


def test_extras_for_users():
    extras = PYPROJECT["project"]["optional-dependencies"]
    for name in ("vllm", "lmms", "docs"):
        assert extras.get(name), f"extra [{name}] missing or empty"
    assert any(req.startswith("lmms-eval") for req in extras["lmms"])


def test_plugin_entry_points_resolve():
    points = PYPROJECT["project"]["entry-points"]
    assert points["lmms_eval.models"] == {"vissparse": "vissparse.lmms:manifest"}
    assert points["vllm.general_plugins"] == {"vissparse": "vissparse.vllm:register"}
    import vissparse.lmms

    assert callable(vissparse.lmms.manifest)


def test_changelog_names_the_released_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{vissparse.__version__}]" in text


def test_testbed_checkpoints_are_package_data():
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["vissparse.testbed.checkpoints"]
    assert "*/*.safetensors" in data and "*/*.json" in data
