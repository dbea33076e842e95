"""Jinja sandboxes that bound a template's work, so a rule file cannot hang or crash crmd.

`{{ 'x' | center(10 ** 9) }}` would take a gigabyte while the template compiles (Jinja works
out constant expressions then), `{{ 10 ** 10 ** 8 }}` would not end. BoundedSandbox, the
environment every template uses, refuses such operations with a SecurityError (a Jinja
TemplateError). CheckSandbox, used only by `crmd check` and reload to render a sample of each
template, also refuses large numbers given to any function or filter (`range(10 ** 8)`) and
limits each render's time, so that checking a template always ends.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

# The longest text or list an operator may make, and the most bits an integer may have.
MAX_SIZE = 100_000
MAX_BITS = 4096
# A width or precision in a %-format: `'%0999999999d' % 1`.
_FORMAT_WIDTH = re.compile(r"%[^a-zA-Z%]*?(\d{6,})")
# How long one sample render may take at check time.
CHECK_SECONDS = 1.0


def _too_large(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SIZE


class _NothingAtCompileTime(CodeGenerator):
    """Writes every output expression as code, never as its value worked out while compiling
    (Jinja does that for constants, `'x' | center(10 ** 9)` included, before any bound)."""

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        if not isinstance(node, nodes.TemplateData):
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox, with `**`, `*` and `%` bounded, and nothing run at compile time: the
    optimizer is off and constants are not folded (a render of text costs the same)."""

    intercepted_binops = frozenset({"**", "*", "%"})
    code_generator_class = _NothingAtCompileTime

    def __init__(self, **options: Any) -> None:
        options.setdefault("optimized", False)
        super().__init__(**options)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if max(abs(left).bit_length(), 1) * right > MAX_BITS:
                raise SecurityError(f"{left} ** {right} is too large a number for a template")
        if operator == "*":
            sizes = [len(v) if isinstance(v, (str, list, tuple)) else None for v in (left, right)]
            counts = [v for v in (left, right) if isinstance(v, int)]
            if any(s is not None for s in sizes) and counts:
                size = max(s for s in sizes if s is not None) * max(counts)
                if size > MAX_SIZE:
                    raise SecurityError(f"a repetition of {size} items is too long for a template")
            elif len(counts) == 2 and sum(abs(c).bit_length() for c in counts) > MAX_BITS:
                raise SecurityError("too large a product for a template")
        if operator == "%" and isinstance(left, str) and _FORMAT_WIDTH.search(left):
            raise SecurityError(f"the format {left!r} is too wide for a template")
        return super().call_binop(context, operator, left, right)


class CheckSandbox(BoundedSandbox):
    """The bounded sandbox for checking: no function or filter gets a number above MAX_SIZE,
    and a render stops after CHECK_SECONDS (`bounded_time`)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.add_filters(dict(self.filters))  # Jinja's own: center, indent, wordwrap...

    def add_filters(self, filters: dict[str, Callable[..., Any]]) -> None:
        """Install filters, each refusing large numbers like every call does."""
        for name, function in filters.items():
            self.filters[name] = _guarded(name, function)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "a function")
        _refuse_large("range" if name == "safe_range" else name, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def _refuse_large(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if _too_large(value):
            raise SecurityError(
                f"{name}() is given {value}: numbers above {MAX_SIZE} are refused when checking"
            )


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    # Jinja passes the context or environment first to a filter marked so (jinja_pass_arg);
    # then comes the value filtered, which may be any size: only the arguments are checked.
    skip = 2 if hasattr(function, "jinja_pass_arg") else 1

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _refuse_large(name, args[skip:], kwargs)
        return function(*args, **kwargs)

    guarded.__dict__.update(getattr(function, "__dict__", {}))
    return guarded


class TemplateTimeout(Exception):
    """A sample render took longer than CHECK_SECONDS."""


@contextmanager
def bounded_time(seconds: float = CHECK_SECONDS) -> Iterator[None]:
    """Stop the Python code run inside this block after `seconds`: a template's loops.

    A trace function sees each line the template's compiled code runs; it works in any
    thread (a daemon reloads in its own), unlike an alarm signal. Only check renders pay it.
    """
    deadline = time.monotonic() + seconds
    previous = sys.gettrace()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise TemplateTimeout(f"rendering took more than {seconds:g} s")
        return trace

    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(previous)
