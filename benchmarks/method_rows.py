"""Each method's measured rows, for its page in ``docs/methods/``.

Reads the generated tables ``benchmarks/results/testbed/testbed.md`` (``make
bench-testbed``) and ``benchmarks/results/methods/methods.md`` (``make bench-methods``)
and puts, between a page's ``method-row-NAME`` markers, the method's row of each model's
first table (with random's row beside it), under the source's own header line. A method
no table has yet says so. ``make bench-methods`` runs it:

    python benchmarks/method_rows.py --readme README.md
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mock_benchmark import marker_files, replace_between_markers

from vissparse.strategies import SCORERS
from vissparse.testbed.models import TESTBED_LACKS

RESULTS = Path(__file__).parent / "results"
SOURCES = (
    ("testbed/testbed.md", "Testbed accuracy, all question families"),
    ("methods/methods.md", "Side by side at the same budget, with speed"),
)


def model_tables(text: str) -> list[tuple[str, list[str]]]:
    """``(model, table lines)`` for the first table after each ``**model**`` line.

    Example:
        >>> model_tables("**m** x:\\n\\n| a |\\n|---|\\n| 1 |\\n\\nmore\\n\\n| b |")
        [('m', ['| a |', '|---|', '| 1 |'])]
    """
    tables, model, lines = [], None, text.splitlines()
    for i, line in enumerate(lines):
        bold = re.match(r"\*\*([^*]+)\*\*", line)
        if bold:
            model = bold.group(1)
        elif model and line.startswith("|"):
            table = []
            for row in lines[i:]:
                if not row.startswith("|"):
                    break
                table.append(row)
            tables.append((model, table))
            model = None
    return tables


def row_name(row: str) -> str:
    """A table row's method name, without ``(reference)`` or ``(in LLM)``.

    Example:
        >>> row_name("| fastv (in LLM) | 1 |")
        'fastv'
    """
    return re.sub(r"\s*\(.*\)$", "", row.split("|")[1].strip())


def method_block(name: str, sources: list[tuple[str, str, str]]) -> str:
    """The ``method-row-NAME`` block: ``name``'s rows of every source table.

    ``sources`` holds ``(path, title, text)`` per generated table file.
    """
    parts = []
    for path, title, text in sources:
        rows = []
        header: list[str] = []
        for model, table in model_tables(text):
            header = table[:2]
            picked = [r for r in table[2:] if row_name(r) in (name, "random")]
            if any(row_name(r) == name for r in picked):
                rows += [f"| {model} " + r for r in picked]
        if rows:
            head = ["| model " + header[0], "|---" + header[1]]
            source = text.splitlines()[0]
            parts.append(f"**{title}** (`{path}`). {source}\n\n" + "\n".join(head + rows))
    if not parts and name in TESTBED_LACKS:
        return f"No testbed or speed row: {TESTBED_LACKS[name]}."
    if not parts:
        return f"No recorded table has a `{name}` row yet: `make bench-testbed` measures it."
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, required=True, help="the repository README")
    args = parser.parse_args()
    sources = []
    for path, title in SOURCES:
        file = args.results / path
        if file.exists():
            sources.append((f"benchmarks/results/{path}", title, file.read_text()))
    for name in SCORERS.names():
        marker = f"method-row-{name}"
        pages = marker_files(args.readme.parent, marker)
        if not pages:
            print(f"no docs page has a {marker} block: add one to docs/methods/")
        for page in pages:
            replace_between_markers(page, marker, method_block(name, sources))
            print(f"{page}: {marker}")


if __name__ == "__main__":
    main()
