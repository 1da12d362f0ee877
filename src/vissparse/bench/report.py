"""Tables, machine descriptions and result files of benchmarks."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

SUMMARY_COLUMNS = (
    ("keep_ratio", "keep", "{:.2f}"),
    ("scorer", "scorer", "{}"),
    ("n_kept", "kept", "{:.0f}"),
    ("n_image_tokens", "of", "{:.0f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("baseline_accuracy", "base acc", "{:.1%}"),
    ("accuracy", "acc", "{:.1%}"),
    ("accuracy_delta", "acc delta", "{:+.1%}"),
    ("baseline_latency_ms", "base ms", "{:.2f}"),
    ("latency_ms", "pruned ms", "{:.2f}"),
)
MODEL_COLUMNS = (
    ("batch_size", "batch", "{}"),
    ("compile", "compiled", "{}"),  # shown where a row is compiled (see _shown)
    ("keep_ratio", "keep", "{:.2f}"),
    ("n_kept", "kept", "{:.0f}"),
    ("n_image_tokens", "of", "{:.0f}"),
    ("prefill_speedup", "prefill", "{:.2f}x"),
    ("flop_speedup_bound", "bound", "{:.2f}x"),
    ("prefill_vs_bound", "of bound", "{:.0%}"),
    ("decode_speedup", "decode", "{:.2f}x"),
    ("e2e_speedup", "e2e", "{:.2f}x"),
    ("baseline_sequences_per_s", "base seq/s", "{:.3g}"),
    ("pruned_sequences_per_s", "seq/s", "{:.3g}"),
    ("baseline_tokens_per_s", "base tok/s", "{:.3g}"),
    ("pruned_tokens_per_s", "tok/s", "{:.3g}"),
    ("throughput_gain", "throughput", "{:.2f}x"),
    ("kv_cache_ratio", "KV", "{:.2f}"),
    ("overhead_ms", "overhead ms", "{:.1f}"),
    ("overhead_fraction", "overhead", "{:.2%}"),
)
# with --stage llm: the fair token count and the input-stage keep ratio at equal FLOPs
LLM_COLUMNS = (
    ("avg_image_tokens", "avg/layer", "{:.1f}"),
    ("input_keep_at_equal_flops", "input keep @FLOPs", "{:.3f}"),
)


def with_throughput(report: dict[str, Any]) -> dict[str, Any]:
    """A ``bench --model-config`` report whose rows all carry batch size, throughput, compile.

    Reports recorded before batches had neither: their batch size is 1, and throughput
    follows from each side's recorded median end-to-end time and the new tokens. Reports
    recorded before ``--compile`` ran eagerly (``compile`` False).

    Example:
        >>> old = {"config": {"new_tokens": 4}, "results": [
        ...     {"baseline": {"e2e_ms": {"median": 500.0}},
        ...      "pruned": {"e2e_ms": {"median": 250.0}}}]}
        >>> row = with_throughput(old)["results"][0]
        >>> row["batch_size"], row["pruned_tokens_per_s"], row["throughput_gain"], row["compile"]
        (1, 16.0, 2.0, False)
    """
    config = report["config"]
    batch = int(config.get("batch_size", 1))
    compiled = bool(config.get("compile", False))
    rows = []
    for row in report["results"]:
        row = {"batch_size": batch, "compile": compiled, **row}
        if "throughput_gain" not in row:
            for side in ("baseline", "pruned"):
                per_s = batch * 1e3 / row[side]["e2e_ms"]["median"]
                row[f"{side}_sequences_per_s"] = per_s
                row[f"{side}_tokens_per_s"] = per_s * config["new_tokens"]
            row["throughput_gain"] = row["pruned_sequences_per_s"] / row["baseline_sequences_per_s"]
        rows.append(row)
    return {
        **report,
        "config": {**config, "batch_size": batch, "compile": compiled},
        "results": rows,
    }


def _shown(rows: Sequence[dict[str, Any]], key: str) -> bool:
    """Whether column ``key`` has a value in some row.

    ``False`` counts as none: an eager run's tables stay as they were before ``--compile``.
    """
    return any(r.get(key) is not None and r.get(key) is not False for r in rows)


def format_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]] = SUMMARY_COLUMNS
) -> str:
    """A plain-text table of result rows (columns absent from every row are left out).

    Example:
        >>> print(format_table([{"keep_ratio": 0.1, "speedup": 2.0}]).splitlines()[0].split())
        ['keep', 'speedup']
    """
    columns = [c for c in columns if _shown(rows, c[0])]
    cells = [
        [fmt.format(r[key]) if r.get(key) is not None else "" for key, _, fmt in columns]
        for r in rows
    ]
    widths = [
        max(len(title), *(len(row[i]) for row in cells)) for i, (_, title, _) in enumerate(columns)
    ]
    lines = ["  ".join(t.rjust(w) for (_, t, _), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def markdown_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]] = MODEL_COLUMNS
) -> str:
    """The same table in Markdown.

    Example:
        >>> print(markdown_table([{"keep_ratio": 0.5}]))
        | keep |
        | ---: |
        | 0.50 |
    """
    columns = [c for c in columns if _shown(rows, c[0])]
    lines = ["| " + " | ".join(t for _, t, _ in columns) + " |",
             "| " + " | ".join("---:" for _ in columns) + " |"]  # fmt: skip
    for r in rows:
        cells = [fmt.format(r[k]) if r.get(k) is not None else "" for k, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_description() -> dict[str, Any]:
    """Where a benchmark ran: CPU, threads, GPU if any, library versions."""
    import transformers

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": _cpu_count(),
        "cpu_model": _cpu_model(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_name(machine: dict[str, Any]) -> str:
    """A :func:`machine_description`'s CPU: its model and architecture where recorded.

    Example:
        >>> machine_name({"processor": "x86_64", "cpu_model": "AMD EPYC"})
        'AMD EPYC (x86_64)'
        >>> machine_name({"processor": "x86_64"})
        'x86_64'
    """
    model = machine.get("cpu_model")
    return f"{model} ({machine['processor']})" if model else str(machine["processor"])


def _cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not on Linux
        pass
    return None


def _cpu_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count()


def check_writable(path: str | os.PathLike[str], folder: bool = False, name: str = "--out") -> Path:
    """Create ``path``'s folder (or ``path`` itself with ``folder``) and check it is writable.

    Called before any work, so an unusable output path fails at once, not after the run;
    the ``ValueError`` names the argument ``name``.

    Example:
        >>> import tempfile
        >>> check_writable(Path(tempfile.mkdtemp()) / "new" / "r.json").name
        'r.json'
    """
    target = Path(path)
    where = target if folder else target.parent
    if folder and target.exists() and not target.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a file; expected a folder")
    if not folder and target.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder; expected a file name")
    try:
        where.mkdir(parents=True, exist_ok=True)
        probe = where / f".vissparse-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"{name} {str(path)!r} cannot be written: {reason}") from None
    return target


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (a temporary file, then a rename).

    A run interrupted while it writes leaves the previous file, never half of one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """``payload`` as indented JSON in ``path``, written whole (see :func:`write_text`)."""
    return write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def write_rows(rows: Sequence[dict[str, Any]], out_dir: str | Path, stem: str,
               extra: dict[str, Any] | None = None) -> dict[str, Path]:  # fmt: skip
    """Write rows as ``{stem}.csv`` and ``{stem}.json`` (with ``extra`` beside them).

    Each file is written whole (see :func:`write_text`): called after every finished
    row, the files always hold the rows finished so far.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flat = [{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in rows]
    keys = list(dict.fromkeys(k for r in flat for k in r))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=keys)
    writer.writeheader()
    writer.writerows(flat)
    csv_path = write_text(out / f"{stem}.csv", table.getvalue())
    json_path = write_json(out / f"{stem}.json", {**(extra or {}), "results": list(rows)})
    return {"csv": csv_path, "json": json_path}
