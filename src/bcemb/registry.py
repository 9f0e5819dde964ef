"""Small registries: one per kind of component (datasets, methods, transforms, ...).

Lookups ignore case and the difference between ``-`` and ``_``; an unknown name raises an
error that lists the valid ones. Synonyms (the original code's names) resolve to the same key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "UnknownNameError"]


class UnknownNameError(KeyError):
    """Raised for a name that no registry entry has."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


class Registry(Generic[T]):
    """A name -> component mapping with normalised lookups and synonyms."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._synonyms: dict[str, str] = {}

    def register(self, name: str, *, synonyms: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator that registers a component under ``name`` (and its synonyms)."""

        def deco(obj: T) -> T:
            key = _norm(name)
            if key in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[key] = obj
            for s in synonyms:
                self._synonyms[_norm(s)] = key
            return obj

        return deco

    def canonical(self, name: str) -> str:
        """The registered key of ``name`` (resolving synonyms)."""
        key = _norm(name)
        key = self._synonyms.get(key, key)
        if key not in self._items:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            )
        return key

    def get(self, name: str) -> T:
        """The component registered under ``name``."""
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        """All registered keys, in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._synonyms.get(_norm(name), _norm(name)) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
