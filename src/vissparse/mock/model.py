"""The mock vision-language model: a small real transformer plus a fixed answer rule.

The model reads the answer off the image tokens it is given.

The answer rule (``pooled_answer``): weight every retained image token by
``softmax(temperature * cosine(token, query))``, pool the tokens with those weights, and
answer with the colour whose prototype has the highest cosine with the pooled vector. So
the answer depends only on the tokens kept: pruning away the answer-bearing tokens really
loses accuracy.

The latency is that of a real ``torch.nn.TransformerEncoder`` run over the text tokens
followed by the retained image tokens (batch 1), the way a language model's prefill runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vissparse.mock.world import COLOURS, SYSTEM_PROMPT, MockWorld, tokenize
from vissparse.query import query_from_embeddings
from vissparse.strategies.cosine import cosine_scores


@dataclass(frozen=True)
class MockModelConfig:
    """Size of the mock language model.

    Example:
        >>> MockModelConfig(n_layers=1).n_heads
        4
    """

    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 4
    temperature: float = 20.0

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < math.inf:
            raise ValueError(f"`temperature` must be a finite number > 0, got {t!r}")


def pooled_answer(tokens: Tensor, query: Tensor, prototypes: Tensor, temperature: float) -> int:
    """Index of the prototype that best matches the query-weighted pooling of ``tokens``.

    Example:
        >>> protos = torch.eye(3)
        >>> tokens = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
        >>> pooled_answer(tokens, torch.tensor([1.0, 0.0, 0.0]), protos, 20.0)
        0
    """
    sims = cosine_scores(tokens.unsqueeze(0), query.unsqueeze(0))[0]
    weights = torch.softmax(temperature * sims, dim=0)
    pooled = weights @ tokens.float()
    return int(cosine_scores(prototypes.unsqueeze(0), pooled.unsqueeze(0))[0].argmax())


class MockVLM(nn.Module):
    """Text embeddings, the answer rule and a small transformer, in one module.

    Example:
        >>> model = MockVLM(MockWorld(dim=16))
        >>> text, prompt_mask = model.embed_text("What color is the car?")
        >>> model.query(text, prompt_mask).shape
        torch.Size([16])
    """

    def __init__(self, world: MockWorld, config: MockModelConfig | None = None) -> None:
        super().__init__()
        self.world = world
        self.config = config or MockModelConfig()
        cfg = self.config
        if world.dim % cfg.n_heads:
            raise ValueError(f"`dim` ({world.dim}) must be divisible by n_heads ({cfg.n_heads})")
        with torch.random.fork_rng(devices=[]):  # seeded weights, the user's RNG untouched
            torch.manual_seed(world.seed)
            layer = nn.TransformerEncoderLayer(
                d_model=world.dim,
                nhead=cfg.n_heads,
                dim_feedforward=cfg.mlp_ratio * world.dim,
                batch_first=True,
                norm_first=True,
            )
            self.layers = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.eval()
        self.prototypes: Tensor
        self.register_buffer("prototypes", world.colour_prototypes(), persistent=False)
        self._system = world.embed(tokenize(SYSTEM_PROMPT))

    def embed_text(self, prompt: str) -> tuple[Tensor, Tensor]:
        """Embeddings of system prompt + user prompt, and the mask of the user's words."""
        words = tokenize(prompt)
        if not words:
            raise ValueError(f"`prompt` must contain at least one word, got {prompt!r}")
        user = self.world.embed(words)
        text = torch.cat([self._system, user])
        mask = torch.zeros(text.shape[0], dtype=torch.bool)
        mask[self._system.shape[0] :] = True
        return text, mask

    def query(self, text: Tensor, prompt_mask: Tensor) -> Tensor:
        """The scorer's query: mean of the user-prompt embeddings (see ``vissparse.query``)."""
        return query_from_embeddings(text.unsqueeze(0), prompt_mask.unsqueeze(0))[0]

    @torch.inference_mode()
    def forward(self, text: Tensor, image_tokens: Tensor, query: Tensor) -> str:
        """Run the transformer over text + image tokens and answer by ``pooled_answer``."""
        sequence = torch.cat([text, image_tokens]).unsqueeze(0)
        self.layers(sequence)
        index = pooled_answer(image_tokens, query, self.prototypes, self.config.temperature)
        return COLOURS[index]
