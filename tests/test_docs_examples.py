"""Every code block of the docs runs or is checked (see ``tests/doc_blocks.py``), every
registered method has its page, and the pages' generated blocks come from ``publish``."""

import importlib
import importlib.util
import re
import shlex
import sys

import pytest

from tests.doc_blocks import DOCS, ROOT, blocks, fast, markdown_files, runnable_python
from vissparse import VisSparse
from vissparse.cli import build_parser
from vissparse.strategies import SCORERS, STRATEGIES, build_scorer
from vissparse.testing import random_image, tiny_model

PAGES = sorted(DOCS.rglob("*.md"))
# modules of other environments (tests/vllm, tests/lmms run those blocks there)
OTHER_ENVIRONMENTS = {"vllm", "openai", "lmms_eval"}


@pytest.fixture
def clean_registries():
    """Registries as they were: a block may register its own scorer."""
    saved = {reg: dict(reg._classes) for reg in (SCORERS, STRATEGIES)}
    yield
    for reg, classes in saved.items():
        reg._classes.clear()
        reg._classes.update(classes)


def run_python_blocks(path, tmp_path, monkeypatch):
    """Run ``path``'s Python blocks in order, in one namespace, in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for block in runnable_python(path):
        try:
            exec(compile(fast(block.code), block.where, "exec"), namespace)
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] in OTHER_ENVIRONMENTS:
                pytest.skip(f"{block.where} needs {err.name}, installed in its own environment")
            raise AssertionError(f"{block.where}: {err!r}") from err
        except Exception as err:
            raise AssertionError(f"{block.where}: {err!r}") from err
    return namespace


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_python_blocks_run(path, tmp_path, monkeypatch, clean_registries):
    run_python_blocks(path, tmp_path, monkeypatch)


def check_command(words: list[str], where: str) -> None:
    """One shell command of a bash block, checked without running it."""
    if words[0] == "vissparse":
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as stop:
            raise AssertionError(f"{where}: `{shlex.join(words)}` does not parse") from stop
    elif words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
        for target in (w for w in words[1:] if "=" not in w):
            assert target in targets, f"{where}: no Makefile target {target!r}"
    elif words[0] == "python" and words[1:2] == ["-m"]:
        module = words[2]
        if module.split(".")[0] not in OTHER_ENVIRONMENTS:
            assert importlib.util.find_spec(module), f"{where}: no module {module}"
    elif words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
        assert (ROOT / words[1]).is_file(), f"{where}: no file {words[1]}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_bash_blocks_parse(path):
    for block in blocks(path):
        if block.language in ("bash", "sh", "console") and not block.needs_weights:
            for command in re.sub(r"\\\n\s*", "", block.code).splitlines():
                words = shlex.split(command, comments=True)
                if words:
                    check_command(words, block.where)


def test_a_broken_block_fails_with_its_place(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```python\nx = 1\n```\n\n```python\nraise ValueError(x)\n```\n")
    monkeypatch.setattr("tests.doc_blocks.ROOT", tmp_path)
    with pytest.raises(AssertionError, match=r"page.md:7: ValueError\(1\)"):
        run_python_blocks(page, tmp_path, monkeypatch)


def test_a_bad_command_fails():
    with pytest.raises(AssertionError, match="does not parse"):
        check_command(["vissparse", "bench", "--keep-ratio", "2"], "x.md:1")
    with pytest.raises(AssertionError, match="no Makefile target"):
        check_command(["make", "no-such-target"], "x.md:1")


def test_needs_weights_marks_only_the_next_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- needs-weights -->\n```python\na\n```\n\n```python\nb\n```\n")
    assert [b.needs_weights for b in blocks(page)] == [True, False]


# ----- method pages: one per registered scorer, generated rows, signals that match


def method_page(name):
    return DOCS / "methods" / f"{name.replace('+', '')}.md"


@pytest.mark.parametrize("name", SCORERS.names())
def test_every_method_has_a_page_in_the_nav(name):
    page = method_page(name)
    assert page.is_file(), f"add docs/methods/{page.name} (see docs/methods/index.md)"
    text = page.read_text()
    assert f"<!-- method-row-{name}:start -->" in text
    assert f"methods/{page.name}" in (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^::: vissparse\.strategies\.", text, flags=re.M)
    cell = re.search(r"^\| signals read \| (.*) \|$", text, flags=re.M)[1]
    # an instance's: CosineScorer's options decide what it reads
    assert sorted(re.findall(r"`(\w+)`", cell)) == sorted(build_scorer(name).requires or ())


# ----- the own-method page's examples do what they say


def test_context_scorer_example_keeps_the_centre_of_the_grid(
    tmp_path, monkeypatch, clean_registries
):
    run_python_blocks(DOCS / "own-method.md", tmp_path, monkeypatch)
    model, processor = tiny_model("qwen2_vl")
    pipe = VisSparse(base_model=model, processor=processor, keep_ratio=0.05, scorer="centre")
    details = pipe.generate(image=random_image(84, 140), prompt="Where?", max_new_tokens=1,
                            return_details=True)  # fmt: skip
    keep = details.keep_mask[0]  # a 3 x 5 merged grid: one token, the centre (1, 2)
    assert keep.nonzero().flatten().tolist() == [7]


def test_own_scorer_example_registers_and_runs(tmp_path, monkeypatch, clean_registries):
    run_python_blocks(DOCS / "own-method.md", tmp_path, monkeypatch)
    results = VisSparse(base_model="mock", mock=True, scorer="norm").benchmark(
        n_samples=2, progress=False
    )
    assert results["n_samples"] == 2 and results["n_kept"] < results["n_image_tokens"]


# ----- publish: a marker block goes into every page that holds it


@pytest.fixture
def publish_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("mock_benchmark", None)
    return importlib.import_module("mock_benchmark")


def test_publish_writes_every_page_with_the_marker(tmp_path, publish_module):
    block = "<!-- t:start -->\nold\n<!-- t:end -->\n"
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    readme, page, other = tmp_path / "README.md", tmp_path / "docs/sub/p.md", tmp_path / "docs/o.md"
    readme.write_text("r\n" + block)
    page.write_text("p\n" + block)
    other.write_text("no marker\n")
    publish_module.publish("![plot](benchmarks/x.png)", tmp_path / "t.md", readme, "t")
    assert "![plot](benchmarks/x.png)" in readme.read_text()
    assert "![plot](../benchmarks/x.png)" in page.read_text()  # relative to docs/
    assert other.read_text() == "no marker\n"
    assert (tmp_path / "t.md").read_text() == "![plot](benchmarks/x.png)\n"


def test_publish_into_the_docs_only(tmp_path, publish_module):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("no block\n")
    page = tmp_path / "docs" / "p.md"
    page.write_text("<!-- t:start -->\n<!-- t:end -->\n")
    publish_module.publish("new", tmp_path / "t.md", tmp_path / "README.md", "t")
    assert page.read_text() == "<!-- t:start -->\nnew\n<!-- t:end -->\n"


def test_publish_without_any_marker_stops(tmp_path, publish_module):
    (tmp_path / "README.md").write_text("no block\n")
    with pytest.raises(SystemExit, match="no file among"):
        publish_module.publish("new", tmp_path / "t.md", tmp_path / "README.md", "t")


# ----- the docs speak of the product and its measurements


STORY = re.compile(r"development session|session's|lent to|this workplace|cut off by", re.I)


STORY_FILES = [*markdown_files(), *sorted((ROOT / "benchmarks" / "results").rglob("*.md"))]


@pytest.mark.parametrize("path", STORY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_development_story(path):
    found = [line for line in path.read_text().splitlines() if STORY.search(line)]
    assert not found, f"{path.relative_to(ROOT)}: name the hardware, not the session: {found}"
