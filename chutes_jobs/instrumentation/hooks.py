"""Which hooks are called, and calling them so that a failing hook never breaks a call.

The process-wide hooks (:func:`add_hook`; the :class:`LoggingHook` by default) come first, in
the order they were added, then a session's own (``ChutesSession(hooks=[...])``). A
:class:`HookSet` keeps, per event type, the hooks that take it, rebuilt only when the
process-wide list changed, so the emitting code asks for a tuple and builds no event when it is
empty.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, TypeAlias

from ..errors import ConfigurationError
from .events import EVENT_TYPES, Event
from .logging_hook import LOGGER_NAME, LoggingHook

__all__ = [
    "Hook",
    "HookSet",
    "add_hook",
    "clear_hooks",
    "emit",
    "get_hooks",
    "remove_hook",
    "reset_hooks",
]

#: A hook: called with each event it takes. For :class:`~.events.RequestSent` and
#: :class:`~.events.OperationStarted` it may return a context manager, entered at once and
#: exited when the request (operation) is over, right after its end event was handed out.
Hook: TypeAlias = Callable[[Event], AbstractContextManager[Any] | None]

_log = logging.getLogger(LOGGER_NAME)


class _Registry:
    """The process-wide hooks; ``version`` changes with every change of ``hooks``."""

    def __init__(self) -> None:
        self.hooks: tuple[Hook, ...] = (LoggingHook(),)
        self.version = 0
        self.lock = threading.Lock()

    def replace(self, hooks: tuple[Hook, ...]) -> None:
        self.hooks = hooks
        self.version += 1


_REGISTRY = _Registry()


def _checked(hook: object) -> Hook:
    if not callable(hook):
        raise ConfigurationError(f"a hook must be callable with one event, got {hook!r}")
    return hook


def add_hook(hook: Hook) -> None:
    """Call ``hook`` with the events of every session in this process (after those added before).

    A hook is any callable taking one event (see :mod:`chutes_jobs.instrumentation.events`).
    Give it an ``event_types`` attribute (a set of event classes) to receive only those; events
    no hook takes are never built. It runs on the event loop, so it must be quick; an exception
    it raises is logged once (``chutes_jobs`` logger, ERROR) and otherwise ignored.
    :class:`ConfigurationError` if ``hook`` is not callable.
    """
    with _REGISTRY.lock:
        _REGISTRY.replace((*_REGISTRY.hooks, _checked(hook)))


def remove_hook(hook: Hook) -> None:
    """Stop calling ``hook`` (every registration of it); nothing happens if it was not added."""
    with _REGISTRY.lock:
        _REGISTRY.replace(tuple(h for h in _REGISTRY.hooks if h is not hook and h != hook))


def clear_hooks() -> None:
    """Remove every process-wide hook, the default :class:`LoggingHook` included."""
    with _REGISTRY.lock:
        _REGISTRY.replace(())


def reset_hooks() -> None:
    """Back to the defaults: the :class:`LoggingHook` only."""
    with _REGISTRY.lock:
        _REGISTRY.replace((LoggingHook(),))


def get_hooks() -> tuple[Hook, ...]:
    """The process-wide hooks, in the order they are called."""
    return _REGISTRY.hooks


def _takes(hook: Hook, event_type: type[Event]) -> bool:
    wanted = getattr(hook, "event_types", None)
    return wanted is None or event_type in wanted


#: Per event type: the hooks taking it, those without the logging hooks, and the
#: (logger, level) checks that decide whether the logging hooks are wanted now.
_Entry: TypeAlias = tuple[
    tuple[Hook, ...], tuple[Hook, ...], tuple[tuple[logging.Logger, int], ...]
]


class HookSet:
    """The hooks of one session: the process-wide ones, then ``own``.

    ``of(event_type)`` is what the emitting code asks: the hooks to call now, an empty tuple
    when none takes that event (then nothing is built).
    """

    __slots__ = ("_entries", "_version", "own")

    def __init__(self, own: Iterable[Hook] = ()) -> None:
        if isinstance(own, str) or not isinstance(own, Iterable):
            raise ConfigurationError(f"hooks must be a list of callables, got {own!r}")
        self.own: tuple[Hook, ...] = tuple(_checked(hook) for hook in own)
        self._version = -1
        self._entries: dict[type[Event], _Entry] = {}

    def __repr__(self) -> str:
        return f"HookSet(own={self.own!r})"

    def of(self, event_type: type[Event]) -> tuple[Hook, ...]:
        """The hooks that take ``event_type`` events now (process-wide first, then own)."""
        if self._version != _REGISTRY.version:
            self._rebuild()
        hooks, quiet, gates = self._entries[event_type]
        if hooks is quiet:
            return hooks
        for logger, level in gates:
            if logger.isEnabledFor(level):
                return hooks
        return quiet

    def _rebuild(self) -> None:
        version = _REGISTRY.version
        everyone = _REGISTRY.hooks + self.own
        entries: dict[type[Event], _Entry] = {}
        for event_type in EVENT_TYPES:
            hooks = tuple(h for h in everyone if _takes(h, event_type))
            quiet = tuple(h for h in hooks if not isinstance(h, LoggingHook))
            gates = tuple(
                {(h.logger, h.level_of(event_type)) for h in hooks if isinstance(h, LoggingHook)}
            )
            entries[event_type] = (hooks, hooks if len(quiet) == len(hooks) else quiet, gates)
        self._entries, self._version = entries, version


#: The hooks of code that runs outside any session (a :class:`~chutes_jobs.RetryPolicy` run
#: directly): the process-wide ones.
PROCESS_HOOKS = HookSet()

#: Hooks whose failure was logged already (compared by identity: hooks need not be hashable).
_failed: list[Hook] = []


def hook_failed(hook: Hook, event: Event) -> None:
    """Log a hook's exception, the first time that hook fails only."""
    if any(seen is hook for seen in _failed):
        return
    _failed.append(hook)
    _log.error(
        "instrumentation hook %r failed on %s; it stays installed and its further failures "
        "are not logged",
        hook,
        type(event).__name__,
        exc_info=True,
    )


def emit(hooks: tuple[Hook, ...], event: Event) -> None:
    """Call every hook with ``event``; a hook's exception is logged once, never raised."""
    for hook in hooks:
        try:
            hook(event)
        except Exception:
            hook_failed(hook, event)


_Managers: TypeAlias = list[tuple[Hook, AbstractContextManager[Any]]]


def open_scopes(hooks: tuple[Hook, ...], event: Event) -> _Managers | None:
    """Emit an opening event and enter the context managers the hooks returned (None: none)."""
    managers: _Managers | None = None
    for hook in hooks:
        try:
            manager = hook(event)
            if manager is not None and hasattr(manager, "__exit__"):
                manager.__enter__()
                managers = managers or []
                managers.append((hook, manager))
        except Exception:
            hook_failed(hook, event)
    return managers


def close_scopes(hooks: tuple[Hook, ...], event: Event, managers: _Managers | None) -> None:
    """Emit the closing ``event``, then exit the managers in reverse order.

    They are exited without the exception, so no hook can swallow it.
    """
    for hook in hooks:
        try:
            hook(event)
        except Exception:
            hook_failed(hook, event)
    if managers is None:
        return
    for hook, manager in reversed(managers):
        try:
            manager.__exit__(None, None, None)
        except Exception:
            hook_failed(hook, event)
