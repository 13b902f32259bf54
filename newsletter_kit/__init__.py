"""newsletter_kit: newsletter campaigns from JupyterLab through a dedicated SMTP server.

The plain Python API a notebook cell calls; the CLI (``newsletter-kit``) and the ipywidgets
panels are thin layers over these names.

Example::

    >>> import newsletter_kit as nk
    >>> store = nk.open_store(":memory:")
    >>> smtp, warnings = nk.update_smtp_settings(store, host="127.0.0.1", port=2525,
    ...     tls="none", daily_limit=500, from_addr="news@example.org")
"""

import lazy_loader as _lazy

# Every public name is imported from its module on first use (the names and their modules are
# in __init__.pyi, which type checkers read too), so that ``import newsletter_kit`` and the
# command line load only what they call: the review (pandas, matplotlib) and the panels
# (ipywidgets) take a second or more to import.
_getattr, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)


def __getattr__(name: str) -> object:
    """The exported names, and ``nk.demo`` (the module: ``nk.demo.ensure_demo_settings(store)``)."""
    if name == "demo":
        import importlib

        return importlib.import_module(".demo", __name__)
    return _getattr(name)


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext newsletter_kit``: registers the ``%newsletter`` line magic.

    Example (in a notebook)::

        %load_ext newsletter_kit
        %newsletter settings
    """
    from .panels.magic import load_ipython_extension as load

    load(ipython)
