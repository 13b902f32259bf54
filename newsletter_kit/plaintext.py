"""The plain-text part a person reads: made from the HTML by html2text, configured for people.

html2text writes Markdown; a text part is read as it is, so the converter is set up to leave
no Markdown behind: layout tables are read as the paragraphs they hold (``ignore_tables``, no
``|`` or ``---``), emphasis is dropped (no ``**SPRING20**``), headings lose their ``#``,
images give their alt text, a link becomes its text followed by its URL in parentheses
(``Visit the shop (https://shop.example/spring)``; just the URL when the text is the URL), and
no character is backslash-escaped. Paragraphs stay apart, each wrapped at
:data:`WIDTH` characters at spaces only: a URL is never broken (nor at its hyphens).

Example::

    >>> print(html_to_text('<table><tr><td><h1>Sale</h1><p>Use <b>SPRING20</b> at '
    ...                    '<a href="https://shop.example/">the shop</a>.</p></td></tr></table>'))
    Sale
    <BLANKLINE>
    Use SPRING20 at the shop (https://shop.example/).
    <BLANKLINE>
"""

from __future__ import annotations

import re
from typing import Any

#: Text lines are wrapped at this width: within RFC 2045's 76, so an ASCII text part stays 7bit.
WIDTH = 76

_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_SHOWN_SCHEMES = re.compile(r"(?:https?:|mailto:|ftp:|tel:)", re.IGNORECASE)
_MARKER = re.compile(r"^(\s*(?:[-*+] |\d+\. |> )?)")
_BLANK_RUNS = re.compile(r"\n{3,}")
# Up to WIDTH characters ending before a space (or the end), else one longer word whole.
_FILL = re.compile(r"(\S{%d,}|.{1,%d})(?: +|$)" % (WIDTH + 1, WIDTH))
_LONG_LINE = re.compile(r"^[^\n]{%d,}$" % (WIDTH + 1), re.MULTILINE)


def _converter() -> Any:
    import html2text

    class PlainText(html2text.HTML2Text):  # type: ignore[misc]  # untyped base
        """html2text with every Markdown-only habit switched off (see the module docstring)."""

        def __init__(self) -> None:
            super().__init__(bodywidth=0)  # wrapped afterwards, never inside a URL
            self.unicode_snob = True  # characters as they are, not ASCII look-alikes
            self.ignore_tables = True
            self.ignore_emphasis = True
            self.images_to_alt = True
            self.default_image_alt = ""
            self.skip_internal_links = True
            self.ul_item_mark = "-"
            self.tag_callback = _plain_tags  # type: ignore[assignment]  # None in the base
            self._hrefs: list[str | None] = []

        def handle_data(self, data: str, entity_char: bool = False) -> None:
            # entity_char=True is html2text's own switch for "do not Markdown-escape this".
            super().handle_data(data, entity_char=True)

    return PlainText()


def _plain_tags(parser: Any, tag: str, attrs: dict[str, str | None], start: bool) -> bool:
    """html2text's tag hook: headings and links written as plain text (True: handled here)."""
    if tag in _HEADINGS:
        parser.p()
        return True
    if tag != "a":
        return False
    if start:
        href = (attrs.get("href") or "").strip()
        shown = href if href and (_SHOWN_SCHEMES.match(href) or "NKTPL" in href) else None
        parser._hrefs.append(shown)
        parser._link_start = len(parser.outtextlist)
        return True
    opened: str | None = parser._hrefs.pop() if parser._hrefs else None
    if opened:
        text = "".join(parser.outtextlist[getattr(parser, "_link_start", 0):]).strip()
        target = opened[7:] if opened.lower().startswith("mailto:") else opened
        if not text:
            parser.o(target)
        elif text not in (opened, target):
            parser.o(f" ({target})")
    return True


def _wrap(line: str) -> str:
    """One line greedily wrapped at spaces, continuation lines indented under a list item or
    quoted under a quote; a word longer than the width (a URL) stands alone, never broken.
    (textwrap does the same, 10 times slower: this runs for each message's personal lines.)"""
    marker = _MARKER.match(line).group(1)  # type: ignore[union-attr]  # always matches
    if not marker:  # a plain paragraph: the same greedy fill by one regex, 3 times faster
        return "\n".join([piece.rstrip() for piece in _FILL.findall(line) if piece])
    indent = "> " if marker.strip() == ">" else " " * len(marker)
    lines: list[str] = []
    current = marker
    filled = False  # whether `current` holds a word yet
    for word in line[len(marker):].split():
        if filled and len(current) + 1 + len(word) > WIDTH:
            lines.append(current)
            current, filled = indent + word, True
        else:
            current = f"{current} {word}" if filled else current + word
            filled = True
    lines.append(current)
    return "\n".join(lines)


def html_to_text(html: str, *, wrap: bool = True) -> str:
    """The text part for ``html``: paragraphs, plain words, links as ``text (URL)``, wrapped.

    ``wrap=False`` leaves each paragraph on one line, for a template whose values are filled
    in later (then :func:`wrap_text` wraps each message).

    Example::

        >>> html_to_text('<p>Hi <i>Ann</i>,<br>see <a href="https://x.example/a-b">this</a></p>')
        'Hi Ann,\\nsee this (https://x.example/a-b)\\n'
    """
    text = str(_converter().handle(html))
    lines = [line.rstrip() for line in text.splitlines()]
    text = _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n") + "\n"
    return wrap_text(text) if wrap else text


def wrap_text(text: str, cache: dict[str, str] | None = None, *, skip: str | None = None) -> str:
    """Each line of ``text`` longer than :data:`WIDTH` wrapped at spaces (never inside a word),
    and the blank lines a paragraph rendered empty leaves closed up.

    ``cache`` maps lines already wrapped to their result: the lines of a newsletter are mostly
    the same for every recipient, so only those holding a recipient's values are wrapped anew.
    Lines holding ``skip`` are left as they are (a template's lines with placeholders, wrapped
    once their values are in).

    Example::

        >>> print(wrap_text("- " + "word " * 20))
        - word word word word word word word word word word word word word word word
          word word word word word
    """
    if "\n\n\n" in text or text.startswith("\n"):  # an {% if %} paragraph rendered empty
        text = _BLANK_RUNS.sub("\n\n", text).lstrip("\n")
    if skip is not None:
        return _LONG_LINE.sub(lambda match: match.group(0) if skip in match.group(0) else _wrap(match.group(0)), text)
    if cache is None:
        return _LONG_LINE.sub(lambda match: _wrap(match.group(0)), text)

    def wrapped(match: re.Match[str]) -> str:
        line = match.group(0)
        hit = cache.get(line)
        if hit is None:
            hit = _wrap(line)
            if len(cache) < 5000:
                cache[line] = hit
        return hit

    return _LONG_LINE.sub(wrapped, text)  # the regex finds the long lines at C speed
