"""Collection rules for the doctests under src/ (pytest's rootdir conftest)."""

import importlib.util

# The vLLM plugin's model classes import vLLM, which lives in .venv-vllm only
# (`make test-vllm` runs them there).
collect_ignore = [] if importlib.util.find_spec("vllm") else ["src/vissparse/vllm/models.py"]
# The lmms-eval plugin's model class imports lmms-eval, which lives in .venv-lmms only
# (`make test-lmms`).
if not importlib.util.find_spec("lmms_eval"):
    collect_ignore.append("src/vissparse/lmms/model.py")
