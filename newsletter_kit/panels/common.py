"""What every panel shares: a ``.widget`` to display, a visible ``.message`` area, error handling.

A panel is a plain Python object holding ipywidgets; it calls the package's API and nothing
else. Displaying the panel displays its ``.widget``; a library error raised by a button's
callback is shown in the panel's ``.message`` area instead of vanishing into the log.

Example::

    class HelloPanel(Panel):
        def __init__(self, store=None):
            super().__init__(store)
            self.button = button("Say hello", self.say_hello)
            self.widget = widgets.VBox([self.button, self.message])

        @catch_errors
        def say_hello(self, _button=None):
            self.show_ok("hello")
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import ipywidgets as widgets

from ..errors import NewsletterKitError, ValidationError
from ..escaping import html_text
from ..store import Store, open_store

F = TypeVar("F", bound=Callable[..., Any])

#: Colours of the message area, by tone (readable on JupyterLab's light and dark themes).
_TONES = {
    "ok": ("#0a6b2d", "#e6f4ea", "✔"),
    "error": ("#a50e0e", "#fce8e6", "✖"),
    "warning": ("#7a4f00", "#fef7e0", "⚠"),
    "info": ("#174ea6", "#e8f0fe", "ℹ"),
}

LABEL_WIDTH = "190px"
FIELD_WIDTH = "520px"


def field_style() -> dict[str, str]:
    """The description style every labelled field uses, so labels line up in a column."""
    return {"description_width": LABEL_WIDTH}


def field_layout(width: str = FIELD_WIDTH) -> widgets.Layout:
    return widgets.Layout(width=width)


def text(label: str, value: str = "", placeholder: str = "", width: str = FIELD_WIDTH) -> widgets.Text:
    """A labelled one-line text field."""
    return widgets.Text(value=value, description=label, placeholder=placeholder,
                        style=field_style(), layout=field_layout(width))


def password(label: str = "Password") -> widgets.Password:
    """A labelled password field (its value is cleared by the panel once it has been used)."""
    return widgets.Password(value="", description=label, style=field_style(), layout=field_layout())


def button(label: str, on_click: Callable[[Any], Any], style: str = "", tooltip: str = "",
           icon: str = "") -> widgets.Button:
    """A button calling ``on_click(button)``."""
    widget = widgets.Button(description=label, button_style=style, tooltip=tooltip or label, icon=icon)
    widget.on_click(on_click)
    return widget


def hint(text_: str) -> widgets.HTML:
    """A short grey explanation under a field, aligned with the fields' inputs.

    ``text_`` is the package's own markup (``<code>``, ``<b>``): never pass it outside text
    (a server reply, a name from the store); put that through :func:`html_text` first.
    """
    return widgets.HTML(
        f'<div style="margin-left:{LABEL_WIDTH};color:var(--jp-ui-font-color2,#666);'
        f'font-size:0.9em;line-height:1.3;max-width:520px">{text_}</div>'
    )


def panel_style() -> widgets.HTML:
    """CSS the panels need: a red frame around a field that failed validation."""
    return widgets.HTML(
        "<style>.nk-invalid input, .nk-invalid select, .nk-invalid textarea "
        "{border:1px solid #d93025 !important; background:#fff5f5}"
        # ipywidgets caps tab titles at a width that cuts "Bounce settings (IMAP)".
        ".nk-panel .lm-TabBar-tab, .nk-panel .p-TabBar-tab {min-width:240px !important;"
        " max-width:none !important; flex:0 0 auto !important}</style>",
        layout=widgets.Layout(height="0px", margin="0"),
    )


def heading(text_: str) -> widgets.HTML:
    """A section title (plain text: escaped)."""
    return widgets.HTML(f"<h4 style='margin:0.6em 0 0.3em 0'>{html_text(text_)}</h4>")


def message_html(text_: str, tone: str = "info") -> str:
    """The HTML the message area shows: one escaped paragraph per line of ``text_``."""
    colour, background, mark = _TONES[tone]
    lines = "<br>".join(html_text(line) for line in str(text_).splitlines() or [""])
    return (f'<div class="nk-message nk-{tone}" style="color:{colour};background:{background};'
            f'padding:6px 10px;border-radius:4px;margin:4px 0;max-width:760px">'
            f"{mark} {lines}</div>")


class Panel:
    """Base of every panel: ``.widget`` (what is displayed) and ``.message`` (what happened).

    Subclasses build their widgets in ``__init__`` and assign ``self.widget``. Displaying the
    panel in a notebook displays ``self.widget``.
    """

    #: ValidationError.field → the widget to mark as invalid (filled in by subclasses).
    field_widgets: dict[str, widgets.Widget]

    def __init__(self, store: Store | None = None):
        self.store = store if store is not None else open_store()
        self.message = widgets.HTML(value="", layout=widgets.Layout(min_height="1.5em"))
        self.message.add_class("nk-panel-message")
        self.widget: widgets.Widget = widgets.VBox([self.message])
        self.widget.add_class("nk-panel")
        self.field_widgets = {}
        self._marked: list[widgets.Widget] = []

    # -- display: the panel *is* its widget in a notebook
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- the message area
    def show(self, text_: str, tone: str = "info") -> None:
        """Replace the message area's content (tone: ok, error, warning, info)."""
        self.message.value = message_html(text_, tone)

    def show_ok(self, text_: str) -> None:
        self.show(text_, "ok")

    def show_error(self, text_: str) -> None:
        self.show(text_, "error")

    def show_lines(self, lines: Iterable[tuple[str, str]]) -> None:
        """Several (tone, text) lines at once, e.g. a result followed by warnings."""
        self.message.value = "".join(message_html(text_, tone) for tone, text_ in lines)

    def clear_message(self) -> None:
        self.message.value = ""
        self._unmark()

    def show_library_error(self, exc: NewsletterKitError) -> None:
        """Show a library error; a ValidationError also marks the field it names."""
        self._unmark()
        field = getattr(exc, "field", None)
        section = getattr(exc, "panel_section", None)  # set by panels with several sections
        key = f"{section}.{field}" if section else field
        widget = self.field_widgets.get(key) if isinstance(exc, ValidationError) and key else None
        if widget is not None:
            widget.add_class("nk-invalid")
            self._marked.append(widget)
            label = getattr(widget, "description", "") or field
            self.show_error(f"{label}: {exc}")
        else:
            self.show_error(str(exc))

    def _unmark(self) -> None:
        for widget in self._marked:
            widget.remove_class("nk-invalid")
        self._marked = []


def catch_errors(method: F) -> F:
    """Decorate a panel callback: library errors go to the panel's message area.

    Anything else is a bug: it is shown too (so the user sees something happened) and then
    re-raised so that it reaches the log with its traceback.
    """

    @functools.wraps(method)
    def wrapper(self: Panel, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except NewsletterKitError as exc:
            self.show_library_error(exc)
            return None
        except Exception as exc:
            self.show_error(f"unexpected error ({type(exc).__name__}): {exc}")
            raise

    return wrapper  # type: ignore[return-value]
