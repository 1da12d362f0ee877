"""Pruning inside the language model (``stage="llm"``): schedules, masks, hooks."""

from vissparse.llm.schedule import PDROP_LAYERS, LayerSchedule, average_tokens

__all__ = ["PDROP_LAYERS", "LayerSchedule", "average_tokens"]
