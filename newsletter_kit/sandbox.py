"""The Jinja sandbox campaign templates render in, with limits on render time and size.

Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment` keeps a template away from Python's
internals, but not from running away: a loop inside a loop, a macro that calls itself twice,
``"x" * 10**9`` or ``10**10**10`` would hang a send run or exhaust its memory. Here every
render of one template for one recipient gets a budget:

- at most :data:`MAX_RENDER_SECONDS` of time, checked at every loop iteration, call and
  arithmetic operation, and at every piece of output;
- at most :data:`MAX_OUTPUT` characters of output, and no single value (a repeated string, a
  filter's result, a number's digits) larger than that;
- recursion is bounded by Python's own limit.

Breaking a limit raises :class:`RenderLimitExceeded` (a :class:`jinja2.TemplateError`), which the
message renderer turns into a one-line :class:`~newsletter_kit.errors.TemplateError`. Templates
are compiled once per campaign by :func:`compile_template`.

Example::

    >>> env = environment(autoescape=False)
    >>> render(compile_template(env, "Hi {{ name }}"), {"name": "Ann"})
    'Hi Ann'
    >>> render(compile_template(env, '{{ "x" * 10**9 }}'), {})
    Traceback (most recent call last):
    ...
    newsletter_kit.sandbox.RenderLimitExceeded: the template would make a value of more than 2000000 characters
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jinja2
import jinja2.nodes
import jinja2.sandbox
import jinja2.visitor

#: The longest one render of one template may take (per recipient, per part), in seconds of
#: this thread's CPU time (a busy machine slows a render down without making it run away).
MAX_RENDER_SECONDS = 1.0
#: The most characters one render of one template may output (and the largest single value).
MAX_OUTPUT = 2_000_000
#: The largest integer a template may compute, in bits (``10**10**10`` would take hours).
MAX_INT_BITS = 64_000
#: How many guard points pass between two looks at the clock (reading a thread's CPU time
#: is a system call: about a microsecond).
_CHECK_EVERY = 64
#: Filters and methods whose integer arguments say how long the result is.
_WIDTH_TAKERS = frozenset({"center", "indent", "ljust", "rjust", "zfill", "expandtabs", "lipsum",
                           "generate_lorem_ipsum"})
_LOOP_GUARD = "__nk_loop_guard"
_SIZE_GUARD = "__nk_size_guard"
_BIG_WIDTH = re.compile(r"\d{7,}")

_state = threading.local()


class RenderLimitExceeded(jinja2.TemplateRuntimeError):
    """A template broke a render limit (time, size); the message says which."""


class _Budget:
    """One render's allowance: a deadline in this thread's CPU time."""

    __slots__ = ("deadline",)

    def __init__(self, seconds: float):
        self.deadline = time.thread_time() + seconds


_ticks = _CHECK_EVERY  # shared by all threads: a race only moves the next look a little


def _check_clock(force: bool = False) -> None:
    """A guard point: every loop iteration, call, filter and intercepted operation passes here;
    every _CHECK_EVERY of them, the render's deadline is looked at."""
    global _ticks
    _ticks -= 1
    if _ticks > 0 and not force:
        return
    _ticks = _CHECK_EVERY
    budget: _Budget | None = getattr(_state, "budget", None)
    if budget is not None and time.thread_time() > budget.deadline:
        raise RenderLimitExceeded(
            f"rendering took more than {MAX_RENDER_SECONDS:g} s for one message (a loop or a "
            "recursion that runs away?)")


def _too_big() -> RenderLimitExceeded:
    return RenderLimitExceeded(f"the template would make a value of more than {MAX_OUTPUT} characters")


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, bytes, list, tuple, dict)) and len(value) > MAX_OUTPUT:
        raise _too_big()
    return value


def _check_widths(name: str, args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse, before the work, a width or count argument that makes an over-long result, and
    a format string asking for a huge field width (``"%999999999s"``)."""
    if name not in _WIDTH_TAKERS and name not in ("format", "format_map"):
        return
    for value in (*args, *kwargs.values()):
        if name in _WIDTH_TAKERS and isinstance(value, int) and value > MAX_OUTPUT:
            raise _too_big()
        if isinstance(value, str) and name in ("format", "format_map") and _huge_width(value):
            raise _too_big()


def _huge_width(fmt: str) -> bool:
    return any(int(digits) > MAX_OUTPUT for digits in _BIG_WIDTH.findall(fmt))


def _guarded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if name in _WIDTH_TAKERS or name == "format":
        @functools.wraps(fn)  # keeps jinja_pass_arg (pass_context and friends)
        def checked(*args: Any, **kwargs: Any) -> Any:
            _check_clock()
            _check_widths(name, args, kwargs)
            return _check_size(fn(*args, **kwargs))

        return checked

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_clock()
        return _check_size(fn(*args, **kwargs))

    return guarded


def _loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: it watches the clock."""
    for item in iterable:
        _check_clock()
        yield item


def _size_guard(value: Any) -> Any:
    """Every ``~`` concatenation's result passes through this."""
    _check_clock()
    return _check_size(value)


class LimitedEnvironment(jinja2.sandbox.SandboxedEnvironment):
    """A sandboxed environment whose calls, arithmetic and filters respect the render limits."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.filters = {name: _guarded_filter(name, fn) for name, fn in self.filters.items()}
        self.globals[_LOOP_GUARD] = _loop_guard
        self.globals[_SIZE_GUARD] = _size_guard

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        """``*``, ``**``, ``+`` and ``%`` with their results' size checked before the work."""
        _check_clock()
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and right * abs(left).bit_length() > MAX_INT_BITS:
                raise RenderLimitExceeded(f"the template would compute a number of more than "
                                          f"{MAX_INT_BITS} bits ({left} ** {right})")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int)
                        and len(seq) * times > MAX_OUTPUT):
                    raise _too_big()
        elif operator == "%" and isinstance(left, str) and _huge_width(left):
            raise _too_big()
        return _check_size(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``"{:999999999}".format`` is refused when looked up: the call would not show the format."""
        if isinstance(obj, str) and attribute in ("format", "format_map") and _huge_width(obj):
            raise _too_big()
        return super().getattr(obj, attribute)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any,  # noqa: N805 (as Jinja's)
             *args: Any, **kwargs: Any) -> Any:
        """Every call a template makes (macros, methods, globals) watches the clock and sizes."""
        _check_clock()
        if args or kwargs:
            _check_widths(getattr(__obj, "__name__", ""), args, kwargs)
        return _check_size(super().call(__context, __obj, *args, **kwargs))


#: What rendering a template may raise; :func:`describe` words each for the analyst.
RENDER_ERRORS = (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError,
                 AttributeError, RecursionError, MemoryError)


def describe(exc: BaseException) -> str:
    """One of RENDER_ERRORS in words.

    Example::

        >>> describe(RecursionError("maximum recursion depth exceeded"))
        'a macro or a recursive loop calls itself without end (RecursionError)'
        >>> describe(ZeroDivisionError("division by zero"))
        'ZeroDivisionError: division by zero'
    """
    if isinstance(exc, RenderLimitExceeded):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "a macro or a recursive loop calls itself without end (RecursionError)"
    if isinstance(exc, MemoryError):
        return "it needs more memory than this machine has (MemoryError)"
    return f"{type(exc).__name__}: {exc}"


def environment(autoescape: bool) -> LimitedEnvironment:
    """The environment campaign templates compile in (HTML autoescaped, text not).

    Example::

        >>> environment(True).autoescape, environment(False).autoescape
        (True, False)
    """
    return LimitedEnvironment(autoescape=autoescape, keep_trailing_newline=True,
                              undefined=jinja2.Undefined)


class _Guards(jinja2.visitor.NodeTransformer):
    """Rewrites a parsed template so that loops and ``~`` pass through the guards."""

    def __init__(self, env: jinja2.Environment):
        self.env = env

    def _wrap(self, guard: str, node: jinja2.nodes.Node) -> jinja2.nodes.Call:
        call = jinja2.nodes.Call(jinja2.nodes.Name(guard, "load"), [node], [], None, None)
        call.set_lineno(node.lineno).set_environment(self.env)
        return call

    def visit_For(self, node: jinja2.nodes.For) -> jinja2.nodes.Node:
        self.generic_visit(node)
        node.iter = self._wrap(_LOOP_GUARD, node.iter)
        return node

    def visit_Concat(self, node: jinja2.nodes.Concat) -> jinja2.nodes.Node:
        self.generic_visit(node)
        return self._wrap(_SIZE_GUARD, node)


def guard_loops(env: jinja2.Environment, ast: jinja2.nodes.Template) -> jinja2.nodes.Template:
    """Make every ``{% for %}`` and ``~`` of ``ast`` pass through the guards (in place).

    Example::

        >>> env = environment(False)
        >>> ast = guard_loops(env, env.parse("{% for i in range(3) %}{{ i ~ '.' }}{% endfor %}"))
        >>> env.from_string(ast).render()
        '0.1.2.'
    """
    _Guards(env).visit(ast)
    return ast


def compile_template(env: jinja2.Environment, source: str | jinja2.nodes.Template) -> jinja2.Template:
    """Compile ``source`` (text, or a parsed template) with its loops guarded.

    Example::

        >>> compile_template(environment(False), "{{ 6 * 7 }}").render()
        '42'
    """
    ast = env.parse(source) if isinstance(source, str) else source
    return env.from_string(guard_loops(env, ast))


def render(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """The template's output, within :data:`MAX_RENDER_SECONDS` and :data:`MAX_OUTPUT`.

    Raises :class:`RenderLimitExceeded` when a limit is broken, RecursionError when macros
    recurse without end.
    """
    outer = getattr(_state, "budget", None)
    _state.budget = _Budget(MAX_RENDER_SECONDS)
    try:
        parts: list[str] = []
        append = parts.append
        size = 0
        # What Template.render does, with the output counted as it comes.
        for chunk in template.root_render_func(template.new_context(dict(context))):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise RenderLimitExceeded(f"the template's output is longer than {MAX_OUTPUT} "
                                          "characters for one message")
            append(chunk)
        _check_clock(force=True)
        return "".join(parts)
    finally:
        _state.budget = outer
