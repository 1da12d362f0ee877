"""MkDocs hook: serve the benchmark plots under ``benchmarks/results`` with the site.

The generated result blocks (``benchmarks/mock_benchmark.py``'s ``publish``) link their
plots by the path from the repository root; in a page under ``docs/`` the link is
rewritten relative to that page, and this hook adds the PNG files to the site at the
same path, so ``mkdocs build --strict`` checks those links as it checks pages.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every ``benchmarks/results/**/*.png`` at its repository path."""
    root = Path(config.config_file_path).parent
    for png in sorted((root / "benchmarks" / "results").rglob("*.png")):
        files.append(
            File(
                png.relative_to(root).as_posix(),
                src_dir=str(root),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files
