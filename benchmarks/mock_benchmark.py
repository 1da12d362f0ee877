"""Mock-mode benchmark: every scorer at every keep ratio, paired against the baseline.

Writes ``mock_cpu.json`` (all figures and the machine) and ``mock_cpu.md`` (the table
quoted in the README) to ``--out``. Also records how long ``benchmark(n_samples=100)``
takes end to end (the wall time a user waits), per row.

    python benchmarks/mock_benchmark.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from vissparse import VisSparse
from vissparse.bench.report import format_table, machine_description, machine_name

# cosine-mean first: the mock's default scorer (its answer rule pools the tokens most like
# the prompt); cosine is the default on real models
SCORERS = ("cosine-mean", "cosine", "cosine-least", "uniform", "random")
KEEP_RATIOS = (0.05, 0.1, 0.25, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--n-samples", type=int, default=100)
    parser.add_argument("--readme", type=Path, help="also put the table into this README")
    args = parser.parse_args()
    rows = []
    for scorer in SCORERS:
        for keep_ratio in KEEP_RATIOS:
            model = VisSparse(base_model="mock", keep_ratio=keep_ratio, mock=True, scorer=scorer)
            start = time.perf_counter()
            result = model.benchmark(n_samples=args.n_samples, progress=False)
            result["wall_s"] = time.perf_counter() - start
            result.pop("records")
            rows.append(result)
            print(format_table([result]).splitlines()[-1], f"  ({result['wall_s']:.1f} s)")
    machine = machine_description()
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"command": "make bench-mock", "machine": machine, "results": rows}
    (args.out / "mock_cpu.json").write_text(json.dumps(payload, indent=2) + "\n")
    walls = [r["wall_s"] for r in rows]
    table = format_table(rows)
    md = [
        f"Measured by `make bench-mock` on {machine_name(machine)}, "
        f"{machine['torch_threads']} torch threads, torch {machine['torch']}; "
        f"n_samples={args.n_samples} per row.",
        "",
        "```",
        table,
        "```",
        "",
        f"Wall time of one `benchmark(n_samples={args.n_samples})` call: "
        f"{min(walls):.1f} s to {max(walls):.1f} s.",
    ]
    publish("\n".join(md), args.out / "mock_cpu.md", args.readme, "mock-results")


def publish(text: str, md_path: Path, readme: Path | None, marker: str) -> None:
    """Write a results table to ``md_path``, print it, and quote it in the docs.

    ``readme`` names the repository's README: the block goes into every file among it
    and ``docs/**/*.md`` beside it that holds the ``marker`` block (a block may live in
    the docs only); none holding it is an error. Links from the repository root (plots
    under ``benchmarks/``) are rewritten relative to each docs page.
    """
    md_path.write_text(text.rstrip("\n") + "\n")
    print(text)
    if readme:
        targets = marker_files(readme.parent, marker)
        if not targets:
            raise SystemExit(f"no file among {readme} and docs/**/*.md has a {marker} block")
        for path in targets:
            replace_between_markers(path, marker, relink(text.strip(), path, readme.parent))


def marker_files(root: Path, name: str) -> list[Path]:
    """README.md and ``docs/**/*.md`` under ``root`` that hold the ``name`` block."""
    start = f"<!-- {name}:start -->"
    candidates = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return [path for path in candidates if path.is_file() and start in path.read_text()]


def relink(text: str, path: Path, root: Path) -> str:
    """Rewrite ``](benchmarks/...)`` links, written from ``root``, for the file ``path``.

    A docs page links the plots where the docs site serves them, at their repository
    path inside the site (``docs/_hooks/results_files.py``): relative to ``docs/``.

    Example:
        >>> relink("![a](benchmarks/a.png)", Path("r/docs/testbed/index.md"), Path("r"))
        '![a](../benchmarks/a.png)'
    """
    docs = root / "docs"
    base = docs if docs in path.parents else root
    prefix = os.path.relpath(base, path.parent).replace(os.sep, "/")
    if prefix == ".":
        return text
    return text.replace("](benchmarks/", f"]({prefix}/benchmarks/")


def replace_between_markers(path: Path, name: str, text: str) -> None:
    r"""Replace what stands between ``<!-- name:start -->`` and ``<!-- name:end -->``.

    Example:
        >>> import tempfile
        >>> page = Path(tempfile.mkdtemp()) / "page.md"
        >>> _ = page.write_text("a\n<!-- t:start -->\nold\n<!-- t:end -->\nb\n")
        >>> replace_between_markers(page, "t", "new")
        >>> page.read_text()
        'a\n<!-- t:start -->\nnew\n<!-- t:end -->\nb\n'
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = path.read_text()
    head, _, rest = content.partition(start)
    _, found, tail = rest.partition(end)
    if not found:
        raise SystemExit(f"{path} has no {start} ... {end} block")
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    main()
