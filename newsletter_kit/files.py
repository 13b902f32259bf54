"""Writing a file into a folder others may write to, without following what they planted there.

Every file the package writes (exports, the demo's bounce files) goes through
:func:`atomic_write`: the content goes to a new temporary file with an unpredictable name,
created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (:func:`tempfile.mkstemp`) in the target's own
folder, and is then renamed over the final name with :func:`os.replace`. So a symbolic link
planted at the temporary name cannot exist (the name is new), and one planted at the final name
is replaced by the rename, never followed: no file outside the folder is created or overwritten.
The folder itself is taken as given (a folder the user names may be a link to elsewhere);
links inside it are never followed. A reader sees the old file or the new one, never half.

Example::

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_write(folder / "hello.txt", text=True) as out:
    ...     _ = out.write("hello")
    >>> (folder / "hello.txt").read_text()
    'hello'
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, text: bool = False, newline: str | None = None,
                 encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """An open file whose content replaces ``path`` when the block ends without an error.

    Binary unless ``text`` (then ``encoding`` and ``newline`` as for :func:`open`). The new
    file gets the permissions a plain ``open(path, "w")`` would give (0666 less the umask).
    On an error the temporary file is removed and ``path`` is left as it was; an ``OSError``
    propagates (callers turn it into their own error).

    Example::

        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "data.bin"
        >>> with atomic_write(target) as out:
        ...     _ = out.write(b"\\x00\\x01")
        >>> target.read_bytes()
        b'\\x00\\x01'
    """
    final = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        raw = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with raw:
            if text:
                with io.TextIOWrapper(raw, encoding=encoding, newline=newline) as out:
                    yield out
            else:
                yield raw
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` would, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o077  # unknown: the safe side, only the owner can read
