"""Extension points: named classes found through entry-point groups, with "did you mean" on typos.

Each place users extend (scorers, methods, judges, gate backends, executors) is one
:class:`ExtensionPoint`. Built-in classes are entry points of this distribution (``setup.cfg``);
plugins under ``plugins/`` and third-party packages add theirs to the same groups; tests and scripts
may :meth:`~ExtensionPoint.register` a class in-process. The CLI's choices and ``--help`` text are read
from here, never from copied tuples.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from mlflow_nlsr.errors import ConfigError, NLSRError

T = TypeVar("T")


class ExtensionPoint(Generic[T]):
    """One entry-point group of classes derived from `base`, looked up by name.

    Args:
        group: entry-point group, e.g. ``"mlflow_nlsr.scorers"``.
        kind: what one extension is called in messages ("scorer", "judge", …).
        base: the class every extension must derive from.
        error: the error raised for an unknown name (a subclass of NLSRError).

    """

    def __init__(
        self, group: str, kind: str, base: type[T], *, error: type[NLSRError] = ConfigError
    ) -> None:
        self.group, self.kind, self.base, self.error = group, kind, base, error
        self._registered: dict[str, type[T]] = {}

    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Return every available name, sorted (installed entry points plus in-process registrations)."""
        return sorted({*self._entry_points(), *self._registered})

    def register(self, name: str, cls: type[T] | None = None) -> Any:
        """Register `cls` under `name` in this process; usable as ``@point.register("name")``."""

        def add(klass: type[T]) -> type[T]:
            if not (isinstance(klass, type) and issubclass(klass, self.base)):
                raise TypeError(f"{self.kind} {name!r} must subclass {self.base.__name__}, got {klass!r}")
            self._registered[name] = klass
            return klass

        return add(cls) if cls is not None else add

    def unregister(self, name: str) -> None:
        """Forget an in-process registration (tests)."""
        self._registered.pop(name, None)

    def get(self, name: str) -> type[T]:
        """Return the class registered as `name`; unknown names raise `error` with a did-you-mean hint."""
        if name in self._registered:
            return self._registered[name]
        found = self._entry_points().get(name)
        if found is None:
            raise self.error(self.unknown_message(name))
        cls = found.load()
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise self.error(
                f"{self.kind} plugin {name!r} ({found.value}) is {cls!r}, expected a {self.base.__name__}"
            )
        return cls

    def create(self, name: str, **options: Any) -> T:
        """Instantiate the extension `name` with `options` (a TypeError becomes a ConfigError)."""
        cls: Callable[..., T] = self.get(name)
        try:
            return cls(**options)
        except TypeError as exc:
            message = f"{self.kind} {name!r} does not accept options {sorted(options)}: {exc}"
            raise ConfigError(message) from exc

    def unknown_message(self, name: str) -> str:
        """Return "unknown <kind> 'x'. Did you mean: y? Available: …" for `name`."""
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(names) or '(none)'}"

    def check(self, name: str) -> str:
        """Return `name` if it is available, else raise `error` (option validation without loading)."""
        if name not in self._registered and name not in self._entry_points():
            raise self.error(self.unknown_message(name))
        return name
