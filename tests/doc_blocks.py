"""The code blocks of README.md and docs/**/*.md, and how the tests run them.

The convention (stated in docs/development.md):

- a ```` ```python ```` block runs: the blocks of one file run in order in one namespace,
  in a temporary working directory, with every ``n_samples=N`` cut to a few samples so
  the suite stays fast;
- a ```` ```bash ```` block is checked: each ``vissparse ...`` line parses with the
  command's own parser, each ``make TARGET`` names a Makefile target, each ``python -m
  MODULE`` names an importable module and each ``python PATH.py`` an existing file;
  other commands (``pip``, ``vllm``, ``lmms-eval``, ...) are outside the package;
- ```` ```text ```` and unlabelled blocks are not code (diagrams, tables, synopses);
- a block right under a ``<!-- needs-weights -->`` line is not run: it needs real
  checkpoints, the network, a GPU or another environment (vLLM's blocks run in
  ``tests/vllm/test_serve.py``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
NEEDS_WEIGHTS = "<!-- needs-weights -->"
FAST_SAMPLES = 4


@dataclass(frozen=True)
class Block:
    """One fenced code block: its file, first line (1-based), language, code, marking."""

    path: Path
    line: int
    language: str
    code: str
    needs_weights: bool

    @property
    def where(self) -> str:
        """``file:line`` of the block's opening fence, relative to the repository."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    """README.md and every page under docs/."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of ``path``, in order."""
    found, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})(\S*)\s*$", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(fence[1]))
            marked = i > 0 and lines[i - 1].strip() == NEEDS_WEIGHTS
            code = "\n".join(lines[i + 1 : end]) + "\n"
            found.append(Block(path, i + 1, fence[2], code, marked))
            i = end
        i += 1
    return found


def runnable_python(path: Path) -> list[Block]:
    """The Python blocks of ``path`` that run (not marked as needing weights)."""
    return [b for b in blocks(path) if b.language == "python" and not b.needs_weights]


def fast(code: str) -> str:
    """``code`` with every ``n_samples=N`` cut to a few samples.

    Example:
        >>> fast("m.benchmark(n_samples=100)")
        'm.benchmark(n_samples=4)'
    """
    return re.sub(r"n_samples=\d+", f"n_samples={FAST_SAMPLES}", code)


def shell_commands(code: str) -> list[str]:
    """The commands of a bash block: continuations joined, comments and blanks dropped.

    Example:
        >>> shell_commands("make demo  # all\\nvissparse show 3 \\\\\\n  --mock\\n")
        ['make demo', 'vissparse show 3 --mock']
    """
    joined = re.sub(r"\\\n\s*", "", code)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(shlex.join(words))
    return commands
