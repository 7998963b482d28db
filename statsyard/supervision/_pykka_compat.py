"""The one place StatsYard relies on a private part of Pykka.

Pykka stops *every* actor in the process when a ``BaseException`` (e.g.
``SystemExit``) escapes a message handler, and it offers no public hook that
sees proxy calls as well as ``tell``/``ask`` messages (``on_receive`` sees
only the latter). :class:`GuardedActor` therefore overrides Pykka's private
``Actor._handle_receive``, the one method every message passes through, to
turn such an exception into an ordinary one, so that only the offending
actor crashes.

``tests/test_pykka_compat.py`` fails loudly when a Pykka release moves or
changes that method, and ``pyproject.toml`` bounds Pykka to the versions
tested here.
"""

from __future__ import annotations

from typing import Any

import pykka

from statsyard.supervision.errors import ChildCrashError

__all__ = ["PRIVATE_HOOK", "GuardedActor"]

PRIVATE_HOOK = "_handle_receive"
"""The private Pykka method :class:`GuardedActor` overrides."""


class GuardedActor(pykka.ThreadingActor):
    """A threading actor from which no ``BaseException`` reaches Pykka."""

    def _handle_receive(self, message: Any) -> Any:
        # Pykka stops every actor in the process on a BaseException. Turn it
        # into an ordinary exception so that only this actor fails (tell) or
        # the caller gets the error (ask, proxy call).
        try:
            return super()._handle_receive(message)
        except Exception:
            raise
        except BaseException as exc:
            raise ChildCrashError(
                f"{type(exc).__name__} raised in {type(self).__name__}: {exc!r}"
            ) from exc
