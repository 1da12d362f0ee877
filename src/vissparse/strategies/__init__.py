"""Scorers and mask strategies: pure tensor code, no transformers imports.

Example:
    >>> import torch
    >>> from vissparse.strategies import CosineScorer, TopKStrategy
    >>> tokens, query = torch.randn(1, 16, 8), torch.randn(1, 8)
    >>> TopKStrategy().select(CosineScorer().score(tokens, query), 0.25).sum().item()
    4
"""

from vissparse.strategies.base import MaskStrategy, TokenScorer, select_tokens
from vissparse.strategies.baselines import RandomScorer, UniformScorer
from vissparse.strategies.cdpruner import CDPrunerScorer
from vissparse.strategies.context import (
    SIGNALS,
    GridSegment,
    ImageLayout,
    PruningContext,
    Selection,
    merge_tokens,
)
from vissparse.strategies.cosine import (
    CosineScorer,
    LeastCosineScorer,
    MaxCosineScorer,
    MeanCosineScorer,
    cosine_scores,
)
from vissparse.strategies.dart import DartScorer
from vissparse.strategies.divprune import DivPruneScorer
from vissparse.strategies.downsample import DownsampleScorer
from vissparse.strategies.mmtok import MMTokScorer
from vissparse.strategies.pool import PoolScorer
from vissparse.strategies.prumerge import PruMergePlusScorer
from vissparse.strategies.registry import (
    SCORERS,
    STRATEGIES,
    build_scorer,
    build_strategy,
    get_scorer,
    get_strategy,
    register_scorer,
    register_strategy,
)
from vissparse.strategies.scope import ScopeScorer
from vissparse.strategies.text_attention import FastVScorer, PDropScorer, TextAttentionScorer
from vissparse.strategies.topk import TopKStrategy, kept_count, topk_mask
from vissparse.strategies.trim import TrimScorer
from vissparse.strategies.visionzip import VisionZipScorer
from vissparse.strategies.vispruner import VisPrunerScorer

__all__ = [
    "SCORERS",
    "SIGNALS",
    "STRATEGIES",
    "CDPrunerScorer",
    "CosineScorer",
    "DartScorer",
    "DivPruneScorer",
    "DownsampleScorer",
    "FastVScorer",
    "GridSegment",
    "ImageLayout",
    "LeastCosineScorer",
    "MMTokScorer",
    "MaskStrategy",
    "MaxCosineScorer",
    "MeanCosineScorer",
    "PDropScorer",
    "PoolScorer",
    "PruMergePlusScorer",
    "PruningContext",
    "RandomScorer",
    "ScopeScorer",
    "Selection",
    "TextAttentionScorer",
    "TokenScorer",
    "TopKStrategy",
    "TrimScorer",
    "UniformScorer",
    "VisPrunerScorer",
    "VisionZipScorer",
    "build_scorer",
    "build_strategy",
    "cosine_scores",
    "get_scorer",
    "get_strategy",
    "kept_count",
    "merge_tokens",
    "register_scorer",
    "register_strategy",
    "select_tokens",
    "topk_mask",
]
