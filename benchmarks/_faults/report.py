"""What a scenario reports: :class:`Figure` lines, and the :class:`Sweep` that looks for
secrets in every log record, exception and repr the scenarios produce."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Figure", "Sweep", "count_figure", "exception_texts", "first_of"]


@dataclass(frozen=True)
class Figure:
    """One measured figure of a scenario, and whether it meets the claim made for it.

    ``why`` says what went wrong (the first failure) when it does not; ``skipped`` is the
    reason a scenario could not run here (then ``ok`` is True and nothing was measured).
    """

    scenario: str
    claim: str
    value: str
    ok: bool
    why: str = ""
    skipped: str | None = None

    def line(self) -> str:
        """``scenario  claim: value`` (+ ``FAILED: why``), as ``python -m benchmarks.faults``
        prints it."""
        if self.skipped is not None:
            return f"{self.scenario:<10} {self.claim}: skipped ({self.skipped})"
        text = f"{self.scenario:<10} {self.claim}: {self.value}"
        return text if self.ok else f"{text}  FAILED: {self.why}"


def count_figure(
    scenario: str, claim: str, bad: list[str], *, total: int | None = None, unit: str = ""
) -> Figure:
    """A figure claiming zero of something: ``bad`` lists each occurrence (the first shown)."""
    value = f"{len(bad)}{unit}" if total is None else f"{len(bad)}{unit} of {total}"
    return Figure(scenario, claim, value, not bad, why=first_of(bad))


def first_of(failures: list[str]) -> str:
    """The first failure, and how many more there are."""
    if len(failures) <= 1:
        return "".join(failures)
    return f"{failures[0]} (and {len(failures) - 1} more)"


#: Secrets by shape, as they would appear unmasked (a masked one reads ``cpk_***``,
#: ``token=***``): API keys, OAuth access tokens, worker tokens (JWTs), token query values.
_SHAPES = {
    "API key": re.compile(r"\bcpk_[A-Za-z0-9]{6,}"),
    "OAuth token": re.compile(r"\bcak_[A-Za-z0-9_\-]{6,}"),
    "worker token (JWT)": re.compile(r"eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"),
    # 16 characters or more: source lines in tracebacks read ``token=token,``
    "token= value": re.compile(r"(?i)\btoken=(?!\*\*\*)[^&\s\"'<>,()]{16,}"),
}


def exception_texts(exc: BaseException) -> Iterator[str]:
    """Every text a user may see of ``exc``: str, repr, notes, attributes that carry server
    text (``detail``, ``url``, ``body_excerpt``), the formatted traceback, and the same for
    its causes, contexts and (exception group) members."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from (str(note) for note in getattr(current, "__notes__", ()))
        for name in ("detail", "url", "body_excerpt", "filename"):
            value = getattr(current, name, None)
            if value is not None:
                yield str(value)
        yield "".join(traceback.format_exception(current))
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)


class Sweep(logging.Handler):
    """Looks for secrets in every text it is shown; keeps counts and the leaks, not the texts.

    As a logging handler (see :meth:`capture`) it checks each record of ``chutes_jobs`` (the
    emulator's ``chutes_jobs.emulator`` included) as formatted, traceback and stack included.
    Scenarios hand it the exceptions and objects they met (:meth:`exception`,
    :meth:`reprs`) and register the credentials they used (:meth:`secret`), which are
    looked for by value whatever they look like (a hotkey seed); the rest by shape.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        self._secrets: dict[str, str] = {}
        self.checked = {"log records": 0, "exceptions": 0, "reprs": 0}
        self.leaks: list[str] = []

    def secret(self, value: str, what: str) -> None:
        """Look for ``value`` (a credential a scenario used) in everything from now on."""
        self._secrets[value] = what
        if value.startswith("0x"):
            self._secrets[value[2:]] = what

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self._formatter.format(record)
        except Exception as exc:  # a malformed record is worth a line of its own
            text = f"unformattable record {record.msg!r}: {exc!r}"
        self._check("log records", text, f"log record {record.name}")

    def exception(self, exc: BaseException) -> None:
        """Check every text of ``exc`` (see :func:`exception_texts`)."""
        self._check("exceptions", "\n".join(exception_texts(exc)), type(exc).__name__)

    def reprs(self, objects: Iterable[object]) -> None:
        """Check the ``repr`` and ``str`` of each object."""
        for obj in objects:
            self._check("reprs", f"{obj!r}\n{obj}", f"repr of {type(obj).__name__}")

    def _check(self, kind: str, text: str, where: str) -> None:
        self.checked[kind] += 1
        found = [what for value, what in self._secrets.items() if value in text]
        found += [what for what, shape in _SHAPES.items() if shape.search(text)]
        if found:
            masked = text
            for value in self._secrets:
                masked = masked.replace(value, "<secret>")
            for shape in _SHAPES.values():
                masked = shape.sub("<secret>", masked)
            self.leaks.extend(f"{what} in {where}: {_excerpt(masked)}" for what in found)

    @contextmanager
    def capture(self) -> Iterator[Sweep]:
        """Check every ``chutes_jobs`` log record, DEBUG included, inside the block.

        The records of the library's loggers are checked as their handlers would see them
        (after the library's redacting filter) and then dropped: tens of thousands of DEBUG
        records would fill a test runner's log capture, and with it the memory the load
        scenario measures. A ``chutes_jobs.*`` logger made later reaches :meth:`emit`.
        """
        names = ["chutes_jobs"] + [
            name for name in logging.root.manager.loggerDict if name.startswith("chutes_jobs.")
        ]
        loggers = [logging.getLogger(name) for name in names]
        top = loggers[0]
        level = top.level
        dropper = _CheckAndDrop(self)
        top.addHandler(self)
        top.setLevel(logging.DEBUG)
        for logger in loggers:
            logger.addFilter(dropper)
        try:
            yield self
        finally:
            for logger in loggers:
                logger.removeFilter(dropper)
            top.removeHandler(self)
            top.setLevel(level)


class _CheckAndDrop(logging.Filter):
    """A logger filter (after the library's own): the sweep checks the record, nobody else
    gets it."""

    def __init__(self, sweep: Sweep) -> None:
        super().__init__()
        self._sweep = sweep

    def filter(self, record: logging.LogRecord) -> bool:
        self._sweep.emit(record)
        return False


def _excerpt(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= 160 else one_line[:157] + "..."
