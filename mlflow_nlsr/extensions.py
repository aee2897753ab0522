"""Extension points: named classes found through entry-point groups, with "did you mean" on typos.

Each place users extend (scorers, methods, judges, gate backends, executors) is one
:class:`ExtensionPoint`. Built-in classes are entry points of this distribution (``setup.cfg``);
plugins under ``plugins/`` and third-party packages add theirs to the same groups; tests and scripts
may :meth:`~ExtensionPoint.register` a class in-process. The CLI's choices and ``--help`` text are read
from here, never from copied tuples.
"""

from __future__ import annotations

import difflib
import importlib
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
        base: the class every extension must derive from, or its ``"module:Class"`` path: a leaf module
            (options.py) can then own the point and validate names without importing torch code;
            the class is imported on the first :meth:`get` or :meth:`register`.
        error: the error raised for an unknown name (a subclass of NLSRError).
        hints: name -> text added to the unknown-name message (e.g. the plugin that provides it).

    """

    def __init__(
        self,
        group: str,
        kind: str,
        base: type[T] | str,
        *,
        error: type[NLSRError] = ConfigError,
        hints: dict[str, str] | None = None,
    ) -> None:
        self.group, self.kind, self.error = group, kind, error
        self._base = base
        self.hints = dict(hints or {})
        self._registered: dict[str, type[T]] = {}
        self._installed: dict[str, EntryPoint] | None = None

    @property
    def base(self) -> type[T]:
        """The base class (imported from its ``"module:Class"`` path on first use)."""
        if isinstance(self._base, str):
            module, _, qualname = self._base.partition(":")
            self._base = getattr(importlib.import_module(module), qualname)
        return self._base  # type: ignore[return-value]

    def _entry_points(self) -> dict[str, EntryPoint]:
        # read once per process (a metadata scan costs ~25 ms; options are validated often)
        if self._installed is None:
            self._installed = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._installed

    def refresh(self) -> None:
        """Forget the cached entry points (after installing a distribution in this process)."""
        self._installed = None

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

    def available(self) -> dict[str, EntryPoint | type[T]]:
        """``{name: entry point or registered class}`` of every available extension, sorted by name."""
        found: dict[str, EntryPoint | type[T]] = {**self._entry_points(), **self._registered}
        return dict(sorted(found.items()))

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
        install = f" {self.hints[name]}" if name in self.hints else ""
        return f"unknown {self.kind} {name!r}.{install}{hint} Available: {', '.join(names) or '(none)'}"

    def choices_help(self, intro: str) -> str:
        """``intro`` then ``name (summary)`` of every extension (the classes' ``summary`` attribute)."""
        parts = [f"{name} ({getattr(self.get(name), 'summary', '')})" for name in self.names()]
        return f"{intro} {'; '.join(parts)}."

    def check(self, name: str) -> str:
        """Return `name` if it is available, else raise `error` (option validation without loading)."""
        if name not in self._registered and name not in self._entry_points():
            raise self.error(self.unknown_message(name))
        return name
