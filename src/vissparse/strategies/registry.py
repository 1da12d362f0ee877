"""Name -> class registries for scorers and strategies.

``register_scorer`` / ``register_strategy`` work as decorators (with or without a name)
or as plain calls; an unknown name raises :class:`UnknownNameError` (a ``ValueError``
and a ``KeyError``) that lists the names on offer.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from vissparse.strategies.base import MaskStrategy, TokenScorer

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A scorer or strategy name that is not registered; the message lists those that are."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A small name -> class registry.

    Example:
        >>> reg = Registry("scorer", TokenScorer)
        >>> sorted(reg.names())
        []
    """

    def __init__(self, kind: str, base: type[T]) -> None:
        self.kind = kind
        self.base = base
        self._classes: dict[str, type[T]] = {}

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def register(self, cls_or_name: type[T] | str | None = None, *, override: bool = False) -> Any:
        """Register a class under its ``name`` attribute or a given name.

        Usable as ``@register``, ``@register("name")`` or ``register(Cls)``.
        """

        def do_register(cls: type[T], name: str | None) -> type[T]:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(
                    f"only subclasses of {self.base.__name__} can be registered as a "
                    f"{self.kind}, got {cls!r}"
                )
            key = name or getattr(cls, "name", None)
            if not isinstance(key, str) or not key:
                raise ValueError(f"a {self.kind} needs a non-empty string `name`, got {key!r}")
            if key in self._classes and self._classes[key] is not cls and not override:
                raise ValueError(
                    f"{self.kind} name {key!r} is already registered to "
                    f"{self._classes[key].__name__}; pass override=True to replace it"
                )
            self._classes[key] = cls
            return cls

        if isinstance(cls_or_name, type):
            return do_register(cls_or_name, None)
        name = cls_or_name

        def decorator(cls: type[T]) -> type[T]:
            return do_register(cls, name)

        return decorator

    def get(self, name: str) -> type[T]:
        """Look a class up by name."""
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None

    def build(self, spec: T | str, **kwargs: Any) -> T:
        """Return ``spec`` if it is already an instance, else build the named class.

        Example:
            >>> SCORERS.build("cosine").name
            'cosine'
        """
        if isinstance(spec, self.base):
            if kwargs:
                raise ValueError(f"options {sorted(kwargs)} apply only to a {self.kind} name")
            return spec
        if isinstance(spec, str):
            return self.get(spec)(**kwargs)
        raise TypeError(
            f"`{self.kind}` must be a registered name ({', '.join(self.names())}) or a "
            f"{self.base.__name__} instance, got {type(spec).__name__}"
        )


SCORERS: Registry[TokenScorer] = Registry("scorer", TokenScorer)  # type: ignore[type-abstract]
STRATEGIES: Registry[MaskStrategy] = Registry(
    "strategy",
    MaskStrategy,  # type: ignore[type-abstract]
)


def register_scorer(cls_or_name: Any = None, *, override: bool = False) -> Any:
    """Register a :class:`TokenScorer` subclass (decorator or call).

    Example:
        >>> @register_scorer("my-norm")
        ... class MyNorm(TokenScorer):
        ...     def score(self, image_tokens, query, valid=None):
        ...         return image_tokens.float().norm(dim=-1)
        >>> get_scorer("my-norm") is MyNorm
        True
    """
    return SCORERS.register(cls_or_name, override=override)


def register_strategy(cls_or_name: Any = None, *, override: bool = False) -> Any:
    """Register a :class:`MaskStrategy` subclass (decorator or call).

    Example:
        >>> import torch
        >>> @register_strategy("all")
        ... class KeepAll(MaskStrategy):
        ...     def select(self, scores, keep_ratio, valid=None):
        ...         return torch.ones_like(scores, dtype=torch.bool)
        >>> get_strategy("all") is KeepAll
        True
    """
    return STRATEGIES.register(cls_or_name, override=override)


def get_scorer(name: str) -> type[TokenScorer]:
    """The scorer class registered under ``name``."""
    return SCORERS.get(name)


def get_strategy(name: str) -> type[MaskStrategy]:
    """The strategy class registered under ``name``."""
    return STRATEGIES.get(name)


def build_scorer(spec: TokenScorer | str, **kwargs: Any) -> TokenScorer:
    """A scorer from a registered name (with options) or an instance."""
    return SCORERS.build(spec, **kwargs)


def build_strategy(spec: MaskStrategy | str, **kwargs: Any) -> MaskStrategy:
    """A strategy from a registered name (with options) or an instance."""
    return STRATEGIES.build(spec, **kwargs)
