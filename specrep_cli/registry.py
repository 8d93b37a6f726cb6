"""Name -> builder tables: what `objective=<name>`, `encoder=<name>` and `dataset=<name>` look up.

    OBJECTIVES = Registry("objective")

    @OBJECTIVES.register("simclr")
    class SimCLR(Method): ...

    OBJECTIVES.get("simclr")    # the class; an unknown name raises KeyError naming the known ones
    OBJECTIVES.names()          # ['simclr', ...], sorted

A registry holds whatever its users call (a class, a function); it only maps names to them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Builders by name. `kind` names what they build in errors ("unknown objective 'x'; known: ...");
    `error` is the exception an unknown name raises (KeyError unless the caller's layer has its own)."""

    def __init__(self, kind: str, error: type[Exception] = KeyError):
        self.kind = kind
        self.error = error
        self._builders: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: the decorated builder becomes `<kind>=<name>`; a name is registered once."""
        def wrap(builder: T) -> T:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder
        return wrap

    def get(self, name: str) -> T:
        """The builder registered as `name`; an unknown name raises `error` naming the known ones."""
        if name not in self._builders:
            raise self.error(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._builders[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
