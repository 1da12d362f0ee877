"""Griffe extension: read the project's ``Example:`` docstring sections as examples.

The package's docstrings head their doctests ``Example:`` (singular); griffe's Google
parser knows ``Examples:`` only and would render the doctest lines as Markdown text, where
an output such as ``[1, 1, 1]`` reads as a link reference. This maps one to the other
before the docstring is parsed, so the API pages show the doctests as code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

EXAMPLE = re.compile(r"^(\s*)Example:\s*$", flags=re.M)


class ExampleSections(griffe.Extension):
    """Rename each ``Example:`` section title to ``Examples:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, if it has one, before it is parsed."""
        if obj.docstring is not None:
            obj.docstring.value = EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
