"""Loud failures for when Pykka changes what statsyard.supervision relies on.

StatsYard overrides one private Pykka method (``Actor._handle_receive``, see
``statsyard/supervision/_pykka_compat.py``). If a Pykka release renames it,
or stops routing every kind of message through it, these tests fail before
any supervision test misbehaves in a confusing way.
"""

from __future__ import annotations

import threading
from importlib import metadata
from typing import Any

import pykka
import pytest
from packaging.requirements import Requirement

from statsyard.supervision import ChildCrashError
from statsyard.supervision._pykka_compat import PRIVATE_HOOK, GuardedActor

WAIT = 5.0


class _Probe(pykka.ThreadingActor):
    """Records every message that passes through the private hook."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.told = threading.Event()

    def _handle_receive(self, message: Any) -> Any:
        self.seen.append(type(message).__name__)
        return super()._handle_receive(message)

    def on_receive(self, message: Any) -> Any:
        if message == "tell":
            self.told.set()
        return message

    def ping(self) -> str:
        return "pong"

    def recorded(self) -> list[str]:
        return list(self.seen)


def test_pykka_still_has_the_private_hook_we_override() -> None:
    """The method exists on Pykka's Actor and takes one message."""
    hook = getattr(pykka.Actor, PRIVATE_HOOK, None)
    assert callable(hook), f"pykka.Actor.{PRIVATE_HOOK} is gone: adapt _pykka_compat"
    assert hook.__code__.co_varnames[:2] == ("self", "message")


def test_every_kind_of_message_passes_through_the_hook() -> None:
    """tell, ask and proxy calls all reach it (on_receive sees only two)."""
    ref = _Probe.start()
    try:
        ref.tell("tell")
        assert ref.ask("ask", timeout=WAIT) == "ask"
        proxy = ref.proxy()
        assert proxy.ping().get(timeout=WAIT) == "pong"
        seen = proxy.recorded().get(timeout=WAIT)
    finally:
        ref.stop()
    assert seen[:2] == ["str", "str"]
    assert "ProxyCall" in seen[2]


class _Exits(GuardedActor):
    def leave(self) -> None:
        raise SystemExit(3)


def test_a_base_exception_in_a_proxy_call_crashes_only_that_actor() -> None:
    """SystemExit becomes ChildCrashError for the caller; Pykka does not stop
    every actor (which it would if the hook were bypassed)."""
    bystander = _Probe.start()
    ref = _Exits.start()
    try:
        with pytest.raises(ChildCrashError, match="SystemExit"):
            ref.proxy().leave().get(timeout=WAIT)
        assert bystander.is_alive()
        assert bystander.proxy().ping().get(timeout=WAIT) == "pong"
    finally:
        ref.stop()
        bystander.stop()


def test_the_installed_pykka_is_within_the_bounds_we_declare() -> None:
    """pyproject.toml bounds Pykka above; the tests above ran on this version."""
    requirement = next(
        Requirement(text)
        for text in metadata.requires("statsyard") or []
        if Requirement(text).name == "pykka"
    )
    assert any(spec.operator == "<" for spec in requirement.specifier)
    assert requirement.specifier.contains(metadata.version("pykka"))
