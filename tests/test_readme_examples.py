"""The README: its code blocks run (see ``tests/doc_blocks.py``), it keeps the product's
contract lines and the test command, it stays short, its links resolve, and its two
figures are generated."""

import re

import pytest

from tests.doc_blocks import README, ROOT, blocks, fast, runnable_python
from vissparse.strategies import SCORERS

CONTRACT = (
    "from vissparse import VisSparse",
    'model = VisSparse(base_model="Qwen/Qwen2-VL-7B", keep_ratio=0.10)',
    'output = model.generate(image=img, prompt="What color is the car?")',
    'model = VisSparse(base_model="mock", keep_ratio=0.10, mock=True)',
    "results = model.benchmark(n_samples=100)",
    "print(f\"Speedup: {results['speedup']:.1f}x, "
    "Accuracy delta: {results['accuracy_delta']:.2%}\")",
)


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for block in runnable_python(README):
        exec(compile(fast(block.code), block.where, "exec"), namespace)
    assert re.search(r"Speedup: \d+\.\dx, Accuracy delta: -?\d+\.\d\d%", capsys.readouterr().out)


@pytest.mark.parametrize("line", CONTRACT)
def test_readme_keeps_the_contract_lines(line):
    code = "".join(b.code for b in blocks(README) if b.language == "python")
    assert line in code.splitlines()


def test_readme_names_the_ci_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "`make test`" in README.read_text()


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 250


def test_readme_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links to a missing {target}"


def test_readme_lists_every_method():
    text = README.read_text()
    # the package's own methods (tests register throwaway scorers in the same registry)
    shipped = [n for n in SCORERS.names() if SCORERS.get(n).__module__.startswith("vissparse.")]
    missing = [name for name in shipped if f"`{name}`" not in text]
    assert not missing, f"add to the README's method table: {missing}"


def test_readme_figures_are_generated():
    text = README.read_text()
    block = text.split("<!-- readme-figures:start -->")[1].split("<!-- readme-figures:end -->")[0]
    assert "Measured by `make bench-testbed` on" in block
    assert "Measured by `make bench-vllm` on" in block
    outside = text.replace(block, "")
    # no measured figure typed by hand outside the generated block
    assert not re.search(r"\d+(\.\d+)?x\b(?! unpruned)|\d+\.\d+%", outside)
