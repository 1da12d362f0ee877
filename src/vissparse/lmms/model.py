r"""The lmms-eval model ``vissparse``: any supported HF family, pruned, batched, logged.

Registered through lmms-eval's ``lmms_eval.models`` entry point (:func:`vissparse.lmms.
manifest`); lmms-eval builds it from ``--model_args`` (see :mod:`vissparse.lmms.args`)::

    lmms-eval --model vissparse \
        --model_args pretrained=llava-hf/llava-1.5-7b-hf,keep_ratio=0.1,scorer=divprune \
        --tasks mme --batch_size 8 --output_path out/

Each batch of requests is one pruned ``generate`` call of vissparse's HF pipeline (the
same call ``VisSparse.generate`` makes): the task's prompt and images go to the family's
processor and chat template, the image tokens are scored and pruned, and the answer is
cut at the task's ``until`` strings. Per sample, the kept image tokens, the effective
keep ratio and the latency of its batch call go to ``sample_log`` (JSONL, when given),
and a summary to lmms-eval's log after every ``generate_until``.

Only generation tasks are supported (``generate_until``); ``loglikelihood`` and
multi-round generation raise ``NotImplementedError``. One process: with
``accelerate launch`` over several processes it refuses to start.
"""

from __future__ import annotations

import os
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger
from tqdm import tqdm

from vissparse.lmms.args import plugin_settings
from vissparse.lmms.batching import cut_at_stops, generate_kwargs, request_batches, stop_strings
from vissparse.lmms.sample_log import append_rows, sample_rows, summary


class VisSparseLMM(lmms):
    """lmms-eval's simple-model interface over :class:`vissparse.VisSparse`.

    Args:
        **model_args: ``--model_args`` and lmms-eval's ``batch_size``/``device``; see
            :func:`vissparse.lmms.args.plugin_settings`.
    """

    is_simple = True

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(
                "`--model vissparse` runs in one process; got WORLD_SIZE="
                f"{os.environ['WORLD_SIZE']} (run lmms-eval without accelerate launch)"
            )
        self.settings = plugin_settings(**model_args)
        from vissparse.api import VisSparse

        self._use(VisSparse(**self.settings.vissparse))

    @classmethod
    def from_vissparse(cls, vissparse: Any, **model_args: Any) -> VisSparseLMM:
        """The plugin over an already-built :class:`vissparse.VisSparse` (HF model).

        For ``lmms_eval.evaluator.simple_evaluate(model=...)`` with a model in memory;
        ``model_args`` are the plugin's own (``batch_size``, ``max_new_tokens``,
        ``sample_log``).
        """
        own = {"batch_size", "max_new_tokens", "sample_log"}
        if set(model_args) - own:
            raise TypeError(f"`from_vissparse` takes {sorted(own)} (the model is built), "
                            f"got {sorted(set(model_args) - own)}")  # fmt: skip
        if vissparse.mock:
            raise ValueError("`vissparse` must wrap a HuggingFace model, not mock mode")
        self = cls.__new__(cls)
        lmms.__init__(self)
        self.settings = plugin_settings(pretrained="<in memory>", **model_args)
        self._use(vissparse)
        return self

    def _use(self, vissparse: Any) -> None:
        """Answer with ``vissparse``'s HF pipeline."""
        self.vissparse = vissparse
        self.pipeline = vissparse.pipeline
        self.rows: list[dict[str, Any]] = []  # every sample's row, in answer order

    @property
    def batch_size(self) -> int:
        """Prompts per pruned ``generate`` call."""
        return self.settings.batch_size

    def _visuals(self, args: tuple[Any, ...]) -> Any:
        """The image (or list of images) of one request, from its task's document."""
        _, _, doc_to_visual, doc_id, task, split = args
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        if not visuals:
            raise ValueError(f"`--model vissparse` needs an image per prompt: task {task!r} "
                             f"doc {doc_id} has none")  # fmt: skip
        return visuals[0] if len(visuals) == 1 else list(visuals)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Answer every request, ``batch_size`` prompts per pruned ``generate`` call."""
        all_args = [req.args for req in requests]
        answers: list[str] = [""] * len(requests)
        rows: list[dict[str, Any]] = []
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="vissparse")
        for batch in request_batches(all_args, self.batch_size):
            first = all_args[batch[0]]
            gen = dict(first[1])
            details = self.pipeline.generate(
                [self._visuals(all_args[i]) for i in batch],
                [all_args[i][0] for i in batch],
                return_details=True,
                **generate_kwargs(gen, self.settings.max_new_tokens),
            )
            stops = stop_strings(gen)
            keys = [(all_args[i][4], all_args[i][3]) for i in batch]
            batch_rows = sample_rows(details, keys)
            for i, row in zip(batch, batch_rows, strict=True):
                answers[i] = cut_at_stops(row["text"], stops)
                row["text"] = answers[i]
                self.cache_hook.add_partial("generate_until", (all_args[i][0], gen), answers[i])
            rows += batch_rows
            if self.settings.sample_log is not None:
                append_rows(self.settings.sample_log, batch_rows)
            bar.update(len(batch))
        bar.close()
        self.rows += rows
        config = self.vissparse.config
        logger.info(f"vissparse {config.scorer} keep {config.keep_ratio:g}: {summary(rows)}")
        return answers

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """Not supported: pruning is measured on generated answers."""
        raise NotImplementedError(
            "`--model vissparse` answers generation tasks (output_type: generate_until) "
            "only; this task asks for loglikelihood"
        )

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        """Not supported."""
        raise NotImplementedError(
            "`--model vissparse` does not support multi-round generation "
            "(output_type: generate_until_multi_round)"
        )
