#!/usr/bin/env bash
# `make test-wheel`: what a user installing from an index gets. Builds the wheel and the
# sdist (python -m build), checks the wheel's size (the testbed checkpoints ship inside it),
# installs the wheel into a fresh virtual environment outside the repository (torch first:
# TORCH_SPEC, TORCH_INDEX as in the Makefile), then runs the README's quick start, the
# reported version and one answer of a shipped testbed checkpoint there.
#
#   tools/test_wheel.sh BUILD_PYTHON    (BUILD_PYTHON: a python with `build` installed)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build_python="${1:?usage: tools/test_wheel.sh BUILD_PYTHON}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0+cpu}"
max_mb="${MAX_WHEEL_MB:-25}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)

cd "$repo"
"$build_python" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
wheel="$(ls "$work"/dist/*.whl)"
ls "$work"/dist/*.tar.gz >/dev/null
"$python" - "$wheel" "$max_mb" <<'PY'
import os, sys, zipfile
wheel, max_mb = sys.argv[1], float(sys.argv[2])
mb = os.path.getsize(wheel) / 2**20
names = zipfile.ZipFile(wheel).namelist()
print(f"{os.path.basename(wheel)}: {mb:.1f} MiB, {len(names)} files")
assert mb < max_mb, f"the wheel is {mb:.1f} MiB, over the {max_mb:g} MiB limit"
for family in ("llava", "qwen2_vl"):
    want = f"vissparse/testbed/checkpoints/{family}/model.safetensors"
    assert want in names, f"{want} is missing from the wheel"
assert not any(n.startswith("tests/") for n in names), "tests/ must not be in the wheel"
PY

"$python" -m venv "$work/env"
env="$work/env/bin"
"$env/python" -m pip install --quiet --upgrade "pip>=23"
"$env/python" -m pip install --quiet "$torch_spec" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
"$env/python" -m pip install --quiet "$wheel"

cd "$work"  # not the repository: the installed package, never src/
unset PYTHONPATH
"$env/python" "$repo/examples/quickstart.py"
"$env/python" - <<'PY'
import importlib.metadata

import vissparse
from vissparse import VisSparse
from vissparse.testbed.checkpoints import checkpoint_dir, shipped_families
from vissparse.testbed.questions import make_questions

assert vissparse.__file__.startswith(__import__("sys").prefix), vissparse.__file__
assert vissparse.__version__ == importlib.metadata.version("vissparse"), vissparse.__version__
assert shipped_families() == ("llava", "qwen2_vl"), shipped_families()
q = make_questions(1)[0]
model = VisSparse(base_model=str(checkpoint_dir("llava")), keep_ratio=0.1, scorer="divprune")
answer = model.generate(image=q["image"], prompt=q["question"], max_new_tokens=2)
print(f"vissparse {vissparse.__version__} from {vissparse.__file__}: testbed llava says {answer!r}")
PY
"$env/vissparse" --help >/dev/null
echo "test-wheel passed in $(( $(date +%s) - start )) s"
