"""How the blocking classes get their methods from the async ones: one source of truth.

Each blocking method is one line naming the async method it mirrors, e.g.
``wait = blocking(aio.JobHandle.wait)``. That line is a descriptor typed with ``ParamSpec``, so
mypy sees the async method's exact parameters and the blocking return type (a coroutine of
``T`` gives ``T``, an ``AsyncIterator[T]`` gives ``Iterator[T]``, ``convert`` maps the result,
e.g. an async ``JobHandle`` to a blocking one). When the class is created the descriptor puts a
plain function in its place, carrying the async method's signature (its return annotation
mapped the same way) and docstring: ``help()``, ``inspect.signature``, IDEs and Jupyter's ``?``
show what they show for the async API, and calls bind like any method's.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from .._loop_thread import LoopThread

__all__ = [
    "ClosingTwin",
    "Twin",
    "blocking",
    "converting",
    "docs_from",
    "iterating",
    "parameters_of",
    "plain",
]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")

#: ``AsyncIterator[X]`` / ``AsyncGenerator[X, None]`` (string annotations) -> ``X``.
_ASYNC_ITERATOR = re.compile(r"Async(?:Iterator|Iterable|Generator)\[(?P<item>.+?)(?:, None)?\]")


#: Added to the docstring of a method returning a plain iterator (the async one's is kept whole).
_ITERATOR_NOTE = (
    "        Blocking twin: returns a plain iterator; closing it, or leaving its ``for`` loop,\n"
    "        closes the async iterator on the session's event loop."
)


class Twin:
    """A blocking object: :attr:`aio` is its async original, run on :attr:`_loop`."""

    aio: Any
    _loop: LoopThread


class ClosingTwin(Twin):
    """A twin owning its loop thread: a context manager whose ``close`` closes :attr:`aio`
    on the loop, then stops the loop."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self._loop.running:
                self._loop.run(self.aio.close())
        finally:
            self._loop.stop()


class _Member(Generic[P, T]):
    """A blocking method made from the async method ``source`` (see the module docstring)."""

    def __init__(
        self,
        source: Callable[..., Any],
        kind: str,
        convert: Callable[[Any, Any], Any] | None,
    ) -> None:
        self._source = source
        self._kind = kind
        self._convert = convert

    def __set_name__(self, owner: type[Any], name: str) -> None:
        setattr(owner, name, self._function(owner, name))

    def _function(self, owner: type[Any], name: str) -> Callable[..., Any]:
        source, convert = self._source, self._convert
        # Called through the instance, so a subclass's override runs (the async Ledger's
        # methods are abstract: each backend has its own).
        called = source.__name__
        if self._kind == "blocking":

            def method(twin: Twin, /, *args: Any, **kwargs: Any) -> Any:
                result = twin._loop.run(getattr(twin.aio, called)(*args, **kwargs))
                return result if convert is None else convert(twin, result)

        elif self._kind == "iterating":

            def method(twin: Twin, /, *args: Any, **kwargs: Any) -> Any:
                items = twin._loop.iterate(getattr(twin.aio, called)(*args, **kwargs))
                return items if convert is None else _converted(items, convert, twin)

        else:

            def method(twin: Twin, /, *args: Any, **kwargs: Any) -> Any:
                result = getattr(twin.aio, called)(*args, **kwargs)
                return result if convert is None else convert(twin, result)

        method.__name__ = name
        method.__qualname__ = f"{owner.__qualname__}.{name}"
        method.__module__ = owner.__module__
        method.__doc__ = source.__doc__
        if self._kind == "iterating":  # the async docstring whole, then how closing works
            method.__doc__ = f"{(source.__doc__ or '').rstrip()}\n\n{_ITERATOR_NOTE}\n"
        method.__signature__ = _blocking_signature(source, self._kind)  # type: ignore[attr-defined]
        return method

    # What mypy sees; at run time the class holds the function made by __set_name__.
    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Callable[Concatenate[Any, P], T]: ...

    @overload
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Callable[P, T]: ...

    def __get__(self, obj: object, owner: type[Any] | None = None) -> Any:
        raise AssertionError("replaced by a function when the class is created")


def _converted(
    items: Generator[Any, None, None], convert: Callable[[Any, Any], Any], twin: Twin
) -> Iterator[Any]:
    with contextlib.closing(items):  # closing this iterator closes the async one
        for item in items:
            yield convert(twin, item)


def _blocking_signature(source: Callable[..., Any], kind: str) -> inspect.Signature:
    """``source``'s signature with the return annotation of its blocking twin."""
    signature = inspect.signature(source)
    returns = signature.return_annotation
    if kind == "iterating":
        match = _ASYNC_ITERATOR.fullmatch(returns) if isinstance(returns, str) else None
        if match is None:
            raise TypeError(f"{source.__qualname__} does not return an async iterator: {returns}")
        returns = f"Iterator[{match['item']}]"
    return signature.replace(return_annotation=returns)


def blocking(source: Callable[Concatenate[Any, P], Awaitable[T]]) -> _Member[P, T]:
    """The blocking twin of the coroutine method ``source``: runs it on the session's loop."""
    return _Member(source, "blocking", None)


@overload
def iterating(
    source: Callable[Concatenate[Any, P], AsyncIterator[T]],
) -> _Member[P, Iterator[T]]: ...


@overload
def iterating(
    source: Callable[Concatenate[Any, P], AsyncIterator[R]], convert: Callable[[Any, R], T]
) -> _Member[P, Iterator[T]]: ...


def iterating(
    source: Callable[Concatenate[Any, P], AsyncIterator[Any]],
    convert: Callable[[Any, Any], Any] | None = None,
) -> _Member[P, Iterator[Any]]:
    """The blocking twin of the async-iterator method ``source``: a plain iterator, each item
    fetched on the loop (and mapped by ``convert(twin, item)``)."""
    return _Member(source, "iterating", convert)


@overload
def plain(source: Callable[Concatenate[Any, P], T]) -> _Member[P, T]: ...


@overload
def plain(
    source: Callable[Concatenate[Any, P], R], convert: Callable[[Any, R], T]
) -> _Member[P, T]: ...


def plain(
    source: Callable[Concatenate[Any, P], Any], convert: Callable[[Any, Any], Any] | None = None
) -> _Member[P, Any]:
    """A method of the async class that does not wait (``session.job``), called as is in the
    caller's thread, its result mapped by ``convert(twin, result)``."""
    return _Member(source, "plain", convert)


def converting(
    source: Callable[Concatenate[Any, P], Awaitable[R]], convert: Callable[[Any, R], T]
) -> _Member[P, T]:
    """:func:`blocking`, the result mapped by ``convert(twin, result)``."""
    return _Member(source, "blocking", convert)


def parameters_of(
    source: Callable[Concatenate[Any, P], Any],
) -> Callable[[Callable[Concatenate[S, ...], None]], Callable[Concatenate[S, P], None]]:
    """Give the decorated ``__init__(self, *args, **kwargs)`` ``source``'s parameters, for mypy
    and for ``inspect.signature``."""

    def decorate(
        function: Callable[Concatenate[S, ...], None],
    ) -> Callable[Concatenate[S, P], None]:
        function.__signature__ = inspect.signature(source)  # type: ignore[attr-defined]
        return function

    return decorate


def docs_from(source: Callable[..., Any]) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Give the decorated function ``source``'s docstring."""

    def decorate(function: Callable[P, T]) -> Callable[P, T]:
        function.__doc__ = source.__doc__
        return function

    return decorate
