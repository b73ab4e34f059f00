"""Name → class registries with aliases, owner tracking and close-match suggestions."""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

from .errors import UsageError

T = TypeVar("T")


class DuplicateName(UsageError):
    """A name or alias already registered by another plugin (the message names both owners)."""


class Registry(Generic[T]):
    """Holds one kind of plugin object (tasks, methods, datasets or metrics) by name.

    Each entry remembers which plugin registered it, so a duplicate name can be reported with both
    owners, and `harness plugins` can say what each plugin contributed.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._owners: dict[str, str] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, entry: T, owner: str, aliases: tuple[str, ...] = ()) -> None:
        for key in (name, *aliases):
            taken_by = self._owner_of(key)
            if taken_by is not None:
                raise DuplicateName(
                    f"duplicate {self.kind} name {key!r}: registered by plugin {taken_by!r} "
                    f"and again by plugin {owner!r}"
                )
        self._entries[name] = entry
        self._owners[name] = owner
        for alias in aliases:
            self._aliases[alias] = name

    def remove_owner(self, owner: str) -> list[str]:
        """Drop every entry (and its aliases) that ``owner`` registered; returns their names."""
        names = [name for name, by in self._owners.items() if by == owner]
        for name in names:
            del self._entries[name], self._owners[name]
        self._aliases = {alias: name for alias, name in self._aliases.items() if name not in names}
        return names

    def _owner_of(self, key: str) -> str | None:
        canonical = self._aliases.get(key, key)
        return self._owners.get(canonical)

    def canonical(self, name: str) -> str:
        """The registered name for a name or alias, or a `UsageError` suggesting close matches."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        candidates = sorted({*self._entries, *self._aliases})
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        listing = f" (see `harness list {self.kind}s`)"
        raise UsageError(f"unknown {self.kind} {name!r}{hint}{listing}")

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def owner(self, name: str) -> str:
        return self._owners[self.canonical(name)]

    def aliases_of(self, name: str) -> list[str]:
        return sorted(alias for alias, target in self._aliases.items() if target == name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
