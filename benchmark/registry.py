"""A small named registry with aliases, glob listing and "did you mean" errors.

Every user-facing name (tasks, model variants, sweep pruners, ...) lives in one of these,
so an unknown name always fails the same way: one line naming it and the valid choices.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered. Its message is a complete user-facing line."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return self.args[0]


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """Maps names (and aliases) to objects; optionally pulls in plugins from an entry-point group."""

    def __init__(self, kind: str, entry_point_group: str | None = None, packages: tuple[str, ...] = ()):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.packages = packages
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = entry_point_group is None and not packages

    def register(self, name: str, obj: T | None = None, *, aliases: tuple[str, ...] = ()):
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def _add(o: T) -> T:
            if name in self._items and self._items[name] is not o:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = o
            for alias in aliases:
                self._aliases[alias] = name
            return o

        return _add(obj) if obj is not None else _add

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        # Importing a module registers its entries: every module of the listed packages
        # (the repo's own tasks/), then whatever other distributions declare as entry points.
        for package_name in self.packages:
            package = importlib.import_module(package_name)
            for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
                importlib.import_module(info.name)
        if self.entry_point_group:
            for ep in entry_points(group=self.entry_point_group):
                ep.load()

    def names(self, pattern: str = "*") -> list[str]:
        self._load_plugins()
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def get(self, name: str) -> T:
        self._load_plugins()
        name = self._aliases.get(name, name)
        if name not in self._items:
            choices = self.names()
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'.{did_you_mean(name, choices)} "
                f"Valid choices: {', '.join(choices)}"
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return self._aliases.get(name, name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]

    @contextlib.contextmanager
    def temporarily(self, entries: dict[str, T] | None = None) -> Iterator[Registry[T]]:
        """Register ``entries`` for the ``with`` block only; anything else registered inside is dropped too.

        For tests: ``with TASKS.temporarily({"adding_nan": DivergingAdding}): ...``.
        """
        self._load_plugins()
        items, aliases = dict(self._items), dict(self._aliases)
        try:
            for name, obj in (entries or {}).items():
                self.register(name, obj)
            yield self
        finally:
            self._items, self._aliases = items, aliases
