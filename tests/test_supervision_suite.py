"""statsyard.supervision on its own: a test suite after OTP's ``supervisor_SUITE``.

Every actor here is a tiny test actor defined in this file; nothing of the
StatsYard pipeline starts. That is the point: the supervision part is meant
for any Pykka application, and this suite is what such an application may
rely on. The groups follow OTP's suite: start and stop, child specs, child
administration (``which_children``, ``terminate_child``, ``restart_child``),
restart types, the rest-for-one strategy, restart intensity, shutdown
deadlines, crash storms, nested supervisors, and the guarantees that make
Pykka behave like an OTP process (a ``BaseException`` never escapes an actor).

No test sleeps: each waits on an event (a journal entry, a link report, a
stopped actor) with a timeout; the sliding intensity window is driven by a
fake clock.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import attrs
import pykka
import pytest

from statsyard.supervision import (
    BadSpecError,
    ChildActor,
    ChildCrashError,
    ChildInfo,
    ChildSpec,
    ChildStartError,
    ChildStopError,
    Link,
    NoSuchChildError,
    StartContext,
    Supervisor,
    SupervisorExit,
    ThreadTracker,
    TreeStoppedError,
)

WAIT = 5.0
"""Seconds any single wait may take before the test fails."""


# -- the test world: a journal of lifecycle events ---------------------------


class World:
    """Shared, thread-safe record of what the test actors did.

    It journals every start, stop and crash, knows which children are alive,
    and notes any moment two incarnations of one child were alive at once
    (the one thing a supervisor must never allow). Tests inject faults
    through it: failures for a child's next starts, or a gate a child's stop
    must wait for.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.events: list[str] = []
        self.alive: set[str] = set()
        self.doubles: list[str] = []
        self.start_faults: dict[str, list[BaseException]] = {}
        self.stop_gates: dict[str, threading.Event] = {}
        self.trees: list[pykka.ActorRef[Any]] = []

    def add(self, event: str) -> None:
        """Journal one event and wake every waiter."""
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def starting(self, name: str) -> None:
        """Called by a child's start: raise an injected fault, or go live."""
        with self._cond:
            faults = self.start_faults.get(name)
            if faults:
                self.events.append(f"failed start {name}")
                self._cond.notify_all()
                raise faults.pop(0)
            if name in self.alive:
                self.doubles.append(name)
            self.alive.add(name)
            self.events.append(f"start {name}")
            self._cond.notify_all()

    def ended(self, event: str, name: str) -> None:
        """Called by a child's stop or crash hook."""
        with self._cond:
            self.alive.discard(name)
            self.events.append(f"{event} {name}")
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool]) -> bool:
        """Wait until ``predicate(events)`` holds; False after ``WAIT`` s."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.events), WAIT)

    def wait_count(self, event: str, count: int) -> bool:
        """Wait until ``event`` was journaled at least ``count`` times."""
        return self.wait_for(lambda events: events.count(event) >= count)

    def lifecycle(self) -> list[str]:
        """Starts, stops, crashes and failed starts, in order (no link reports)."""
        with self._cond:
            return [e for e in self.events if not e.startswith("exited ")]

    def take(self) -> list[str]:
        """The lifecycle so far; the journal starts afresh."""
        with self._cond:
            events = [e for e in self.events if not e.startswith("exited ")]
            self.events = []
            return events


class ReportingLink:
    """Wraps the supervisor's link and journals ``exited <name>`` after it.

    The supervisor's link tells the supervisor of the exit before this
    journal entry is written, so once a test sees the entry, any later call
    to the supervisor is answered after the exit was handled.
    """

    def __init__(self, inner: Link, name: str, world: World) -> None:
        self._inner = inner
        self._name = name
        self._world = world

    def adopt(self, thread: threading.Thread) -> None:
        self._inner.adopt(thread)

    def started(self) -> None:
        self._inner.started()

    def exited(self, *, crashed: bool, error: BaseException | None) -> None:
        self._inner.exited(crashed=crashed, error=error)
        self._world.add(f"exited {self._name}")


# -- tiny test actors ----------------------------------------------------------


@attrs.frozen
class Crash:
    """Told: raise an ordinary exception in the handler (an OTP crash)."""


@attrs.frozen
class Exit:
    """Told: stop normally from inside (OTP's exit with reason ``normal``)."""


@attrs.frozen
class Raise:
    """Told or asked: raise ``error``, which may be a ``BaseException``."""

    error: BaseException


@attrs.frozen
class Hold:
    """Told: block the handler until ``gate`` opens (a busy child)."""

    gate: threading.Event


@attrs.frozen
class CrashAfter:
    """Told: wait for ``gate``, then crash (to crash many children at once)."""

    gate: threading.Event


class Worker(ChildActor):
    """The smallest useful supervised actor: it journals its life to a World."""

    def __init__(
        self,
        *,
        name: str,
        world: World,
        siblings: dict[str, pykka.ActorRef[Any]],
        link: Link | None,
    ) -> None:
        super().__init__(link=link)
        self.name = name
        self.world = world
        self.sibling_refs = siblings

    def on_child_start(self) -> None:
        self.world.starting(self.name)

    def on_child_stop(self) -> None:
        gate = self.world.stop_gates.get(self.name)
        if gate is not None:
            self.world.add(f"stopping {self.name}")
            gate.wait(WAIT)
        self.world.ended("stop", self.name)

    def on_child_failure(self, error: BaseException | None) -> None:
        self.world.ended("crash", self.name)

    def ping(self) -> str:
        """Answer with the child's name (an ask that proves it is serving)."""
        return self.name

    def siblings(self) -> dict[str, pykka.ActorRef[Any]]:
        """The elder siblings the supervisor gave this incarnation."""
        return self.sibling_refs

    def fail(self, error: BaseException) -> None:
        """Raise ``error``; asked, the caller gets it and the child lives on."""
        raise error

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Crash):
            raise RuntimeError(f"{self.name} was told to crash")
        if isinstance(message, Exit):
            self.stop()
            return None
        if isinstance(message, Raise):
            raise message.error
        if isinstance(message, Hold):
            message.gate.wait(WAIT)
            return None
        if isinstance(message, CrashAfter):
            message.gate.wait(WAIT)
            raise RuntimeError(f"{self.name} crashed with the others")
        return super().on_receive(message)


def worker(world: World, name: str, **spec: Any) -> ChildSpec:
    """A ChildSpec for a Worker named ``name``; ``spec`` sets restart etc."""

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return Worker.start(
            name=name,
            world=world,
            siblings=dict(ctx.siblings),
            link=ReportingLink(ctx.link, name, world),
        )

    return ChildSpec(name, start, **spec)


class StartWatch:
    """A host's link to a top-level supervisor: how its start and life ended."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.gone = threading.Event()
        self.start_error: BaseException | None = None
        self.crashed: bool | None = None

    def adopt(self, thread: threading.Thread) -> None:
        pass  # these tests join threads through the actors themselves

    def started(self) -> None:
        self.ready.set()

    def exited(self, *, crashed: bool, error: BaseException | None) -> None:
        if not self.ready.is_set():
            self.start_error = error
            self.ready.set()
        self.crashed = crashed
        self.gone.set()


@attrs.define
class Tree:
    """A started supervisor with its World, and a record of how it ended."""

    ref: pykka.ActorRef[Supervisor]
    world: World
    exits: list[SupervisorExit]
    ended: threading.Event

    @property
    def proxy(self) -> Any:
        """The supervisor's proxy (typed loosely: Pykka's proxies are dynamic)."""
        return self.ref.proxy()

    def children(self) -> dict[str, ChildInfo]:
        """``which_children``, by id."""
        rows: list[ChildInfo] = self.proxy.which_children().get(timeout=WAIT)
        return {row.id: row for row in rows}

    def child(self, name: str) -> pykka.ActorRef[Any]:
        """The child's current ref."""
        ref: pykka.ActorRef[Any] = self.proxy.child(name).get(timeout=WAIT)
        return ref

    def settle(self) -> None:
        """Return once the supervisor handled every exit reported so far."""
        self.proxy.which_children().get(timeout=WAIT)

    def tell(self, name: str, message: Any) -> None:
        """Tell the child ``message`` and wait until its exit is handled."""
        reports = self.world.events.count(f"exited {name}")
        self.child(name).tell(message)
        assert self.world.wait_count(f"exited {name}", reports + 1)
        if self.ref.is_alive():
            try:
                self.settle()
            except pykka.ActorDeadError:
                pass  # it gave up meanwhile: the test looks at self.exits

    def crash(self, name: str) -> None:
        """Crash the child (an exception in a told handler) and wait it out."""
        self.tell(name, Crash())

    def wait_ended(self) -> SupervisorExit:
        """Wait for the tree to stop by itself; return why."""
        assert self.ended.wait(WAIT), "the tree did not stop"
        assert self.ref.actor_stopped.wait(WAIT)
        assert len(self.exits) == 1
        return self.exits[0]


def start_tree(world: World, specs: list[ChildSpec], **options: Any) -> Tree:
    """Start a supervisor over ``specs`` and wait until every child is up."""
    exits: list[SupervisorExit] = []
    ended = threading.Event()

    def on_exit(exit_: SupervisorExit) -> None:
        exits.append(exit_)
        ended.set()

    ref = Supervisor.start(specs=specs, on_exit=on_exit, **options)
    world.trees.append(ref)
    tree = Tree(ref, world, exits, ended)
    tree.settle()  # answered once on_start (starting every child) is done
    return tree


def workers(world: World, *names: str, **spec: Any) -> list[ChildSpec]:
    """One Worker spec per name, all with the same options."""
    return [worker(world, name, **spec) for name in names]


@pytest.fixture
def world() -> Iterator[World]:
    """A fresh World; its trees are stopped from the top when the test ends."""
    world = World()
    yield world
    for gate in world.stop_gates.values():
        gate.set()
    for ref in world.trees:
        if ref.is_alive():
            ref.stop(block=True, timeout=WAIT)


@pytest.fixture
def abcd(world: World) -> Iterator[Tree]:
    """Four permanent workers a, b, c, d, OTP's default intensity (3 in 5 s)."""
    tree = start_tree(world, workers(world, "a", "b", "c", "d"), max_seconds=60.0)
    world.take()
    yield tree
    if tree.ref.is_alive():
        tree.ref.stop(block=True, timeout=WAIT)
    assert world.doubles == []


# -- starting and stopping (OTP: sup_start, sup_stop) --------------------------


def test_children_start_in_spec_order_and_stop_in_reverse(world: World) -> None:
    """Each child starts after the one before it is up; stop runs backwards."""
    tree = start_tree(world, workers(world, "a", "b", "c"))
    assert world.take() == ["start a", "start b", "start c"]
    tree.ref.stop(block=True, timeout=WAIT)
    assert world.take() == ["stop c", "stop b", "stop a"]
    assert tree.exits == [SupervisorExit("stopped", gave_up=False)]


def test_each_child_is_given_its_elder_siblings_only(world: World) -> None:
    """A child may depend on the children before it: it gets their refs."""
    tree = start_tree(world, workers(world, "a", "b", "c"))
    refs = {name: tree.child(name) for name in ("a", "b", "c")}
    for name, elders in (("a", []), ("b", ["a"]), ("c", ["a", "b"])):
        siblings = refs[name].proxy().siblings().get(timeout=WAIT)
        assert sorted(siblings) == elders
        assert all(siblings[elder] is refs[elder] for elder in elders)


def test_a_supervisor_without_children_starts_and_stops(world: World) -> None:
    """An empty tree is valid (OTP: sup_start_normal with no children)."""
    tree = start_tree(world, [])
    assert tree.children() == {}
    tree.ref.stop(block=True, timeout=WAIT)
    assert tree.exits == [SupervisorExit("stopped", gave_up=False)]


def test_stopping_the_tree_waits_for_every_child(world: World) -> None:
    """stop(block=True) returns once each child's own stop has run."""
    tree = start_tree(world, workers(world, "a", "b"))
    world.take()
    tree.ref.stop(block=True, timeout=WAIT)
    assert world.alive == set()
    assert world.take() == ["stop b", "stop a"]


def test_a_child_failing_while_the_tree_starts_fails_the_whole_start(
    world: World,
) -> None:
    """OTP: no restarts while starting. The started children stop in reverse,
    later ones never start, and the start reports the child's own error."""
    cause = OSError(98, "Address already in use")
    world.start_faults["c"] = [cause]
    watch = StartWatch()
    exits: list[SupervisorExit] = []
    ref = Supervisor.start(
        specs=workers(world, "a", "b", "c", "d"),
        max_restarts=100,
        link=watch,
        on_exit=exits.append,
    )
    assert watch.ready.wait(WAIT)
    assert watch.gone.wait(WAIT)
    assert ref.actor_stopped.wait(WAIT)
    assert exits == []  # a tree that never came up reports through its link
    assert world.take() == ["start a", "start b", "failed start c", "stop b", "stop a"]
    assert isinstance(watch.start_error, ChildStartError)
    assert watch.start_error.child_id == "c"
    assert watch.start_error.__cause__ is cause
    assert watch.crashed is True


def test_a_start_function_that_raises_fails_the_start(world: World) -> None:
    """The start callable itself may fail (before any actor exists)."""

    def broken(ctx: StartContext) -> pykka.ActorRef[Any]:
        raise LookupError("no such device")

    watch = StartWatch()
    Supervisor.start(
        specs=[worker(world, "a"), ChildSpec("b", broken), worker(world, "c")],
        link=watch,
    )
    assert watch.ready.wait(WAIT)
    assert isinstance(watch.start_error, ChildStartError)
    assert "b could not start: no such device" in str(watch.start_error)
    assert isinstance(watch.start_error.__cause__, LookupError)
    assert watch.gone.wait(WAIT)
    assert world.take() == ["start a", "stop a"]


def test_a_start_that_outlasts_its_start_timeout_fails_the_start(
    world: World,
) -> None:
    """ChildSpec.start_timeout bounds on_start; the hung child gets its
    shutdown deadline to stop, and is then abandoned."""
    release = threading.Event()

    class Hanging(Worker):
        def on_child_start(self) -> None:
            self.world.add(f"hanging {self.name}")
            release.wait(WAIT)

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return Hanging.start(name="h", world=world, siblings={}, link=ctx.link)

    watch = StartWatch()
    try:
        Supervisor.start(
            specs=[
                worker(world, "a"),
                ChildSpec("h", start, start_timeout=0.2, shutdown=0.2),
            ],
            link=watch,
        )
        assert watch.ready.wait(WAIT)
        assert isinstance(watch.start_error, ChildStartError)
        assert "h did not start within 0.2 s" in str(watch.start_error)
        assert isinstance(watch.start_error.__cause__, TimeoutError)
    finally:
        release.set()
    assert watch.gone.wait(WAIT)
    assert world.take() == ["start a", "hanging h", "stop a"]


def test_a_start_timeout_of_none_waits_as_long_as_the_start_takes(
    world: World,
) -> None:
    """OTP's infinity: a long legitimate start (say, recovery) is not cut off.
    The child's start is held until the test has seen the supervisor wait."""
    release = threading.Event()

    class Slow(Worker):
        def on_child_start(self) -> None:
            self.world.add(f"recovering {self.name}")
            assert release.wait(WAIT)
            super().on_child_start()

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return Slow.start(name="s", world=world, siblings={}, link=ctx.link)

    watch = StartWatch()
    ref = Supervisor.start(
        specs=[ChildSpec("s", start, start_timeout=None), worker(world, "t")],
        link=watch,
    )
    world.trees.append(ref)
    assert world.wait_for(lambda e: "recovering s" in e)
    # The supervisor is still inside its start: an ask waits behind it.
    pending = ref.proxy().which_children()
    with pytest.raises(pykka.Timeout):
        pending.get(timeout=0.1)
    release.set()
    rows = pending.get(timeout=WAIT)
    assert [(row.id, row.alive) for row in rows] == [("s", True), ("t", True)]
    assert watch.ready.is_set()
    assert watch.start_error is None


# -- child specs (OTP: child_specs, sup_flags, sup_start_map) --------------------


def test_a_child_spec_has_otp_defaults_and_cannot_change() -> None:
    """permanent, 5 s to stop, 30 s to start; a spec is a frozen value."""

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        raise AssertionError("never started")

    spec = ChildSpec("x", start)
    assert (spec.id, spec.start, spec.restart) == ("x", start, "permanent")
    assert (spec.shutdown, spec.start_timeout) == (5.0, 30.0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        spec.restart = "temporary"  # type: ignore[misc]


def test_an_unknown_restart_type_is_rejected() -> None:
    """OTP: {invalid_restart_type, prmanent}; the error names child and value."""
    with pytest.raises(BadSpecError, match=r"child 'x': restart must be .*'prmanent'"):
        ChildSpec("x", Worker.start, restart=cast(Any, "prmanent"))


@pytest.mark.parametrize("field", ["shutdown", "start_timeout"])
@pytest.mark.parametrize("value", [0, -10, float("inf"), float("nan"), "5", True])
def test_a_deadline_that_is_not_a_positive_number_of_seconds_is_rejected(
    field: str, value: Any
) -> None:
    """OTP: {invalid_shutdown, -10}. There is no brutal_kill (0) nor infinity
    for shutdown: Python cannot kill a thread, so every wait must end."""
    with pytest.raises(BadSpecError, match=f"child 'x': {field} must be a finite"):
        ChildSpec("x", Worker.start, **{field: value})
    assert isinstance(BadSpecError("x"), ValueError)


def test_only_start_timeout_may_be_none() -> None:
    """start_timeout=None waits for ever (OTP: infinity); shutdown may not."""
    assert ChildSpec("x", Worker.start, start_timeout=None).start_timeout is None
    with pytest.raises(BadSpecError, match="shutdown"):
        ChildSpec("x", Worker.start, shutdown=cast(Any, None))


def test_duplicate_child_ids_are_rejected_before_anything_starts(
    world: World,
) -> None:
    """OTP: {duplicate_child_name, child}. Raised in the caller's thread."""
    with pytest.raises(BadSpecError, match="unique"):
        Supervisor.start(specs=workers(world, "a", "b", "a"))
    assert world.events == []
    assert isinstance(BadSpecError("x"), ValueError)


@pytest.mark.parametrize(
    ("max_restarts", "max_seconds"), [(-1, 5.0), (3, 0.0), (3, -1.0)]
)
def test_a_malformed_restart_intensity_is_rejected(
    max_restarts: int, max_seconds: float
) -> None:
    """OTP: invalid_intensity, invalid_period."""
    with pytest.raises(BadSpecError, match="max_restarts"):
        Supervisor.start(specs=[], max_restarts=max_restarts, max_seconds=max_seconds)


# -- child administration (OTP: child_adm) ---------------------------------------


def test_which_children_lists_every_child_in_start_order(abcd: Tree) -> None:
    """id, current ref, liveness, restart count and restart type, per child."""
    rows: list[ChildInfo] = abcd.proxy.which_children().get(timeout=WAIT)
    assert [row.id for row in rows] == ["a", "b", "c", "d"]
    for row in rows:
        assert row.alive
        assert row.restarts == 0
        assert row.restart == "permanent"
        assert row.ref is abcd.child(row.id)
        assert row.ref is not None
        assert row.ref.proxy().ping().get(timeout=WAIT) == row.id


def test_terminate_child_stops_it_and_keeps_it_stopped(
    abcd: Tree, world: World
) -> None:
    """Terminated by request, a permanent child is not restarted; its spec stays."""
    abcd.proxy.terminate_child("c").get(timeout=WAIT)
    assert world.take() == ["stop c"]
    abcd.settle()
    rows = abcd.children()
    assert (rows["c"].ref, rows["c"].alive) == (None, False)
    assert all(rows[name].alive for name in ("a", "b", "d"))
    with pytest.raises(NoSuchChildError, match="terminated"):
        abcd.child("c")
    # Terminating it again is harmless (OTP: ok).
    abcd.proxy.terminate_child("c").get(timeout=WAIT)
    assert world.take() == []


def test_restart_child_starts_it_again_with_the_children_after_it(
    abcd: Tree, world: World
) -> None:
    """Unlike OTP, the later children restart too: they get its fresh ref."""
    abcd.proxy.terminate_child("b").get(timeout=WAIT)
    world.take()
    abcd.proxy.restart_child("b").get(timeout=WAIT)
    assert world.take() == ["stop d", "stop c", "start b", "start c", "start d"]
    new_b = abcd.child("b")
    assert abcd.child("c").proxy().siblings().get(timeout=WAIT)["b"] is new_b


def test_restart_child_of_a_running_child_restarts_it(abcd: Tree, world: World) -> None:
    """OTP answers {error, running}; here a running child is stopped and
    started again, with the children after it."""
    old = abcd.child("c")
    abcd.proxy.restart_child("c").get(timeout=WAIT)
    assert world.take() == ["stop d", "stop c", "start c", "start d"]
    assert abcd.child("c") is not old
    assert not old.is_alive()


@pytest.mark.parametrize("call", ["child", "terminate_child", "restart_child"])
def test_an_unknown_child_id_is_a_clear_error(abcd: Tree, call: str) -> None:
    """OTP: {error, not_found}; here NoSuchChildError, a KeyError, naming it."""
    with pytest.raises(NoSuchChildError, match="no child named 'nope'") as info:
        getattr(abcd.proxy, call)("nope").get(timeout=WAIT)
    assert isinstance(info.value, KeyError)
    assert info.value.child_id == "nope"
    assert abcd.ref.is_alive()


def test_the_child_table_follows_restarts_and_closes_with_the_tree(
    abcd: Tree,
) -> None:
    """Callers outside the tree find the living child by id, across restarts."""
    table = abcd.proxy.table.get(timeout=WAIT)
    first = table.get("b", timeout=WAIT)
    abcd.crash("b")
    second = table.get("b", timeout=WAIT)
    assert second is not first
    assert second.is_alive()
    assert table.mailboxes().keys() == {"a", "b", "c", "d"}
    abcd.ref.stop(block=True, timeout=WAIT)
    assert table.closed
    with pytest.raises(TreeStoppedError):
        table.get("b", timeout=WAIT)


# -- restart types (OTP: normal/abnormal termination groups) ---------------------


@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        ("permanent", "normal exit", True),
        ("permanent", "crash", True),
        ("transient", "normal exit", False),
        ("transient", "crash", True),
        ("temporary", "normal exit", False),
        ("temporary", "crash", False),
    ],
)
def test_each_restart_type_decides_whether_an_exit_restarts_the_child(
    world: World, restart: str, how: str, restarted: bool
) -> None:
    """permanent: always; transient: after a crash only; temporary: never."""
    tree = start_tree(world, [worker(world, "x", restart=restart), worker(world, "y")])
    world.take()
    tree.tell("x", Crash() if how == "crash" else Exit())
    ended = "crash x" if how == "crash" else "stop x"
    rows = tree.children()
    if restarted:
        assert world.take() == [ended, "stop y", "start x", "start y"]
        assert (rows["x"].alive, rows["x"].restarts) == (True, 1)
        assert (rows["y"].alive, rows["y"].restarts) == (True, 1)
    else:
        assert world.take() == [ended]
        assert (rows["x"].ref, rows["x"].alive, rows["x"].restarts) == (None, False, 0)
        assert (rows["y"].alive, rows["y"].restarts) == (True, 0)
    assert tree.ref.is_alive()


def test_a_temporary_bystander_is_not_restarted_with_its_elder(
    world: World,
) -> None:
    """OTP's temporary_bystander: a temporary child stopped because an elder
    sibling crashed is not started again (temporary means never)."""
    tree = start_tree(
        world,
        [
            worker(world, "a"),
            worker(world, "temp", restart="temporary"),
            worker(world, "z"),
        ],
    )
    world.take()
    tree.crash("a")
    assert world.take() == ["crash a", "stop z", "stop temp", "start a", "start z"]
    rows = tree.children()
    assert (rows["temp"].alive, rows["temp"].restarts) == (False, 0)
    assert (rows["z"].alive, rows["z"].restarts) == (True, 1)
    assert "temp" not in tree.child("z").proxy().siblings().get(timeout=WAIT)
    # Its spec stays: restart_child starts it again, by request only.
    tree.proxy.restart_child("temp").get(timeout=WAIT)
    assert world.take() == ["stop z", "start temp", "start z"]
    assert tree.children()["temp"].alive


def test_a_transient_child_that_exited_normally_restarts_with_its_elder(
    world: World,
) -> None:
    """As in OTP, only temporary children are dropped from a group restart: a
    transient child that finished is started again when an elder restarts."""
    tree = start_tree(
        world, [worker(world, "a"), worker(world, "job", restart="transient")]
    )
    tree.tell("job", Exit())
    world.take()
    tree.crash("a")
    assert world.take() == ["crash a", "start a", "start job"]
    assert tree.children()["job"].alive


# -- the rest-for-one strategy (OTP: restart_rest_for_one group) -----------------


@pytest.mark.parametrize(
    ("crashed", "restarted"),
    [("a", "abcd"), ("b", "bcd"), ("c", "cd"), ("d", "d")],
)
def test_rest_for_one_restarts_the_child_and_every_child_after_it(
    abcd: Tree, world: World, crashed: str, restarted: str
) -> None:
    """The later children stop in reverse, then all start again in order;
    the earlier children keep running, untouched."""
    before = {name: abcd.child(name) for name in "abcd"}
    abcd.crash(crashed)
    later = restarted[1:]
    assert world.take() == (
        [f"crash {crashed}"]
        + [f"stop {name}" for name in reversed(later)]
        + [f"start {name}" for name in restarted]
    )
    for name, row in abcd.children().items():
        assert row.alive
        assert (row.ref is before[name]) == (name not in restarted)
        assert row.restarts == (1 if name in restarted else 0)


def test_on_restart_names_each_child_a_restart_started_again(world: World) -> None:
    """The host hears of every restarted child, in start order, once it is up."""
    restarted: list[str] = []
    tree = start_tree(world, workers(world, "a", "b", "c"), on_restart=restarted.append)
    tree.crash("b")
    assert restarted == ["b", "c"]
    tree.proxy.terminate_child("c").get(timeout=WAIT)
    tree.proxy.restart_child("c").get(timeout=WAIT)
    assert restarted == ["b", "c"]  # a restart by request is the caller's own


def test_a_thread_tracker_lets_the_host_join_every_child_thread(
    world: World,
) -> None:
    """Each child's thread is added to the supervisor's ThreadTracker, so a
    host can wait for all of them to end after the tree stopped."""
    tracker = ThreadTracker()
    tree = start_tree(world, workers(world, "a", "b"), threads=tracker)
    assert len(tracker.join(timeout=0.01)) == 2  # both still running
    tree.ref.stop(block=True, timeout=WAIT)
    assert tracker.join(timeout=WAIT) == []


def test_restarted_children_hold_fresh_references_to_their_elders(
    abcd: Tree,
) -> None:
    """After b restarts, c and d reach the new b, never the dead one."""
    abcd.crash("b")
    new_b = abcd.child("b")
    for name in ("c", "d"):
        siblings = abcd.child(name).proxy().siblings().get(timeout=WAIT)
        assert siblings["b"] is new_b
        assert siblings["a"] is abcd.child("a")


def test_a_child_failing_to_restart_is_retried_alone(abcd: Tree, world: World) -> None:
    """OTP's rest_for_one_other_child_fails_restart: a restarts, b then fails
    its own start; the retry starts b and what follows, not a again."""
    world.start_faults["b"] = [RuntimeError("b is not ready yet")]
    abcd.crash("a")
    assert world.wait_count("start d", 1)
    abcd.settle()
    assert world.take() == [
        "crash a",
        "stop d",
        "stop c",
        "stop b",
        "start a",
        "failed start b",
        "start b",
        "start c",
        "start d",
    ]
    rows = abcd.children()
    assert all(row.alive for row in rows.values())
    assert rows["a"].restarts == 1
    assert rows["b"].restarts == 2


def test_a_child_that_keeps_failing_to_restart_escalates(
    world: World,
) -> None:
    """OTP's rest_for_one_escalation: each failed restart counts against the
    intensity, so a child that cannot come back stops the tree."""
    tree = start_tree(world, workers(world, "a", "b"), max_restarts=3, max_seconds=60)
    world.start_faults["b"] = [RuntimeError(f"attempt {n}") for n in range(10)]
    tree.crash("a")
    exit_ = tree.wait_ended()
    assert exit_.gave_up
    assert exit_.child_id == "b"
    assert "more than 3 restarts within 60 s" in exit_.reason
    assert world.events.count("failed start b") == 3
    assert world.alive == set()


def test_a_restart_that_outlasts_its_start_timeout_stops_the_tree(
    world: World,
) -> None:
    """A child hung in its restart can be neither trusted nor stopped: the
    tree stops at once, whatever the intensity left."""
    release = threading.Event()
    starts: list[int] = []

    class HangsOnRestart(Worker):
        def on_child_start(self) -> None:
            starts.append(1)
            if len(starts) > 1:
                self.world.add(f"hanging {self.name}")
                release.wait(WAIT)
            super().on_child_start()

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return HangsOnRestart.start(
            name="h", world=world, siblings={}, link=ReportingLink(ctx.link, "h", world)
        )

    tree = start_tree(
        world,
        [ChildSpec("h", start, start_timeout=0.2, shutdown=0.2), worker(world, "z")],
        max_restarts=100,
    )
    world.take()
    try:
        tree.child("h").tell(Crash())
        exit_ = tree.wait_ended()
        assert exit_.gave_up
        assert exit_.child_id == "h"
        assert "h did not start within 0.2 s" in exit_.reason
        assert world.take() == ["crash h", "stop z", "hanging h"]
    finally:
        release.set()


# -- restart intensity (OTP: multiple_restarts, *_escalation) --------------------


def test_up_to_max_restarts_are_allowed_and_one_more_stops_the_tree(
    abcd: Tree, world: World
) -> None:
    """OTP's rule: more than max_restarts restarts within max_seconds stops
    every child in reverse order and the supervisor, saying why."""
    for _ in range(3):
        abcd.crash("c")
    assert abcd.ref.is_alive()
    assert abcd.children()["c"].restarts == 3
    world.take()
    abcd.crash("c")
    exit_ = abcd.wait_ended()
    assert world.take() == ["crash c", "stop d", "stop b", "stop a"]
    assert exit_.gave_up
    assert exit_.child_id == "c"
    assert exit_.reason.startswith("child c crashed (RuntimeError: ")
    assert exit_.reason.endswith("more than 3 restarts within 60 s")


def test_max_restarts_zero_makes_the_first_crash_stop_the_tree(
    world: World,
) -> None:
    """Intensity 0: the tree runs only as long as nothing fails."""
    tree = start_tree(world, workers(world, "a", "b"), max_restarts=0)
    world.take()
    tree.crash("b")
    exit_ = tree.wait_ended()
    assert exit_.gave_up
    assert world.take() == ["crash b", "stop a"]


def test_exits_that_are_not_restarted_do_not_count_against_the_intensity(
    world: World,
) -> None:
    """Only restarts count: transient and temporary children ending normally
    (and a temporary child crashing) use up nothing."""
    tree = start_tree(
        world,
        [
            worker(world, "t1", restart="temporary"),
            worker(world, "t2", restart="temporary"),
            worker(world, "tr", restart="transient"),
            worker(world, "p"),
        ],
        max_restarts=1,
    )
    tree.crash("t1")
    tree.tell("t2", Exit())
    tree.tell("tr", Exit())
    tree.crash("p")  # the one restart allowed
    assert tree.ref.is_alive()
    assert tree.children()["p"].restarts == 1


class FakeClock:
    """Stands in for the ``time`` module inside the supervisor: a clock the
    test moves by hand, so the intensity window needs no waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The supervisor's clock, under the test's control."""
    fake = FakeClock()
    module = importlib.import_module("statsyard.supervision.supervisor")
    monkeypatch.setattr(module, "time", fake)
    return fake


def test_the_intensity_period_is_a_sliding_window(
    world: World, clock: FakeClock
) -> None:
    """Restarts older than max_seconds stop counting: the window slides with
    each restart instead of resetting at fixed intervals."""
    tree = start_tree(world, workers(world, "a"), max_restarts=2, max_seconds=10)
    for at in (0.0, 4.0, 11.0):  # at 11 s the one at 0 s has left the window
        clock.now = 1000.0 + at
        tree.crash("a")
        assert tree.ref.is_alive(), f"gave up at {at} s"
    clock.now = 1000.0 + 13.0  # 4, 11 and 13 s: three within 10 s
    tree.crash("a")
    exit_ = tree.wait_ended()
    assert "more than 2 restarts within 10 s" in exit_.reason


def test_restarts_spread_wider_than_the_period_never_stop_the_tree(
    world: World, clock: FakeClock
) -> None:
    """OTP's multiple_restarts: a child may crash for ever, if slowly enough."""
    tree = start_tree(world, workers(world, "a", "b"), max_restarts=1, max_seconds=5)
    for n in range(20):
        clock.now += 5.5
        tree.crash("a")
        assert tree.ref.is_alive(), f"gave up after {n + 1} crashes"
    assert tree.children()["a"].restarts == 20
    assert world.doubles == []


# -- crash storms ----------------------------------------------------------------


def test_a_crash_storm_stops_the_tree_exactly_once(world: World) -> None:
    """Crash after crash: the tree restarts up to its limit, then stops once,
    with every child stopped and every thread of the tree ended."""
    before = set(threading.enumerate())
    tree = start_tree(world, workers(world, "a", "b", "c"), max_restarts=5)
    table = tree.proxy.table.get(timeout=WAIT)
    crashes = 0
    while not tree.ended.is_set() and crashes < 20:
        name = "abc"[crashes % 3]
        try:
            ref = table.get(name, timeout=WAIT)
        except TreeStoppedError:
            break
        reports = world.events.count(f"exited {name}")
        ref.tell(Crash())
        crashes += 1
        assert world.wait_count(f"exited {name}", reports + 1)
        try:
            tree.settle()  # the crash is handled: restarted, or the tree ended
        except pykka.ActorDeadError:
            break
    exit_ = tree.wait_ended()
    assert crashes == 6  # five restarts, then the sixth crash gives up
    assert exit_.gave_up
    assert world.alive == set()
    assert world.doubles == []
    for thread in set(threading.enumerate()) - before:
        thread.join(WAIT)
    assert set(threading.enumerate()) - before == set()


def test_every_child_crashing_at_once_never_runs_two_incarnations(
    world: World,
) -> None:
    """Exits of children the supervisor is already restarting are stale and
    ignored: whatever order the reports arrive in, each child ends up alive
    exactly once and no child ever ran beside its own earlier incarnation."""
    names = ["a", "b", "c", "d", "e"]
    for _ in range(5):
        tree = start_tree(world, workers(world, *names), max_restarts=100)
        gate = threading.Event()
        reports = {name: world.events.count(f"exited {name}") for name in names}
        for name in names:
            tree.child(name).tell(CrashAfter(gate))
        gate.set()
        for name in names:
            assert world.wait_count(f"exited {name}", reports[name] + 1)
        tree.settle()
        rows = tree.children()
        assert all(row.alive for row in rows.values())
        assert world.alive == set(names)
        assert 1 <= rows["a"].restarts <= len(names)
        tree.ref.stop(block=True, timeout=WAIT)
        assert world.alive == set()
    assert world.doubles == []


# -- shutdown deadlines (OTP: sup_stop_timeout; Python cannot kill a thread) -----


def test_a_child_that_will_not_stop_is_left_behind_after_its_deadline(
    world: World,
) -> None:
    """Stopping the tree waits at most the child's shutdown seconds for it,
    stops the others in reverse order regardless, and names it in the exit."""
    gate = threading.Event()
    world.stop_gates["b"] = gate
    tree = start_tree(
        world,
        [worker(world, "a"), worker(world, "b", shutdown=0.2), worker(world, "c")],
    )
    world.take()
    try:
        tree.ref.stop(block=True, timeout=WAIT)
        assert world.take() == ["stop c", "stopping b", "stop a"]
        assert tree.exits == [
            SupervisorExit("stopped; still running: b", gave_up=False)
        ]
    finally:
        gate.set()
    assert world.wait_for(lambda e: "stop b" in e)


@pytest.mark.parametrize("stuck_in", ["its stop", "a handler"])
def test_a_child_that_misses_its_deadline_is_never_started_twice(
    world: World, stuck_in: str
) -> None:
    """Rest-for-one must stop b before restarting a; when b will not stop in
    time, no second b starts beside the first: the tree stops instead."""
    gate = threading.Event()
    if stuck_in == "its stop":
        world.stop_gates["b"] = gate
    tree = start_tree(world, [worker(world, "a"), worker(world, "b", shutdown=0.2)])
    try:
        if stuck_in == "a handler":
            tree.child("b").tell(Hold(gate))
        tree.child("a").tell(Crash())
        exit_ = tree.wait_ended()
        assert exit_.gave_up
        assert exit_.child_id == "b"
        assert "b did not stop within 0.2 s" in exit_.reason
        assert world.events.count("start a") == 1
        assert world.events.count("start b") == 1
    finally:
        gate.set()


def test_terminating_a_child_that_will_not_stop_stops_the_tree(
    world: World,
) -> None:
    """terminate_child raises ChildStopError to its caller, and the tree stops
    rather than carry on beside a child it could not stop."""
    gate = threading.Event()
    world.stop_gates["b"] = gate
    tree = start_tree(world, [worker(world, "a"), worker(world, "b", shutdown=0.2)])
    try:
        with pytest.raises(ChildStopError, match=r"b did not stop within 0\.2 s"):
            tree.proxy.terminate_child("b").get(timeout=WAIT)
        exit_ = tree.wait_ended()
        assert exit_.gave_up
        assert exit_.child_id == "b"
    finally:
        gate.set()


# -- nested supervisors (OTP: tree) ------------------------------------------------


def sub_tree(
    world: World, name: str, specs: list[ChildSpec], **options: Any
) -> ChildSpec:
    """A ChildSpec whose child is itself a Supervisor over ``specs``."""

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return Supervisor.start(
            specs=specs, link=ReportingLink(ctx.link, name, world), **options
        )

    return ChildSpec(name, start, shutdown=WAIT)


def test_a_supervisor_can_supervise_supervisors(world: World) -> None:
    """Start is depth-first in order; stop is depth-first in reverse."""
    tree = start_tree(
        world,
        [worker(world, "a"), sub_tree(world, "sub", workers(world, "x", "y"))],
    )
    assert world.take() == ["start a", "start x", "start y"]
    tree.ref.stop(block=True, timeout=WAIT)
    assert world.take() == ["stop y", "stop x", "stop a"]


def test_a_crash_inside_a_subtree_is_handled_there(world: World) -> None:
    """Only the inner supervisor restarts; the outer one sees nothing."""
    tree = start_tree(
        world,
        [
            sub_tree(world, "sub", workers(world, "x", "y")),
            worker(world, "z"),
        ],
    )
    sub = tree.child("sub")
    world.take()
    x = sub.proxy().child("x").get(timeout=WAIT)
    x.tell(Crash())
    assert world.wait_count("start y", 1)
    assert world.take() == ["crash x", "stop y", "start x", "start y"]
    assert tree.children()["sub"].restarts == 0
    assert tree.child("sub") is sub


def test_a_subtree_that_gives_up_is_restarted_by_its_parent(world: World) -> None:
    """Escalation: past its own intensity the inner supervisor stops; its
    parent restarts it (and its younger siblings), within the parent's own
    intensity."""
    tree = start_tree(
        world,
        [
            sub_tree(world, "sub", workers(world, "x"), max_restarts=0),
            worker(world, "z"),
        ],
    )
    world.take()
    first_sub = tree.child("sub")
    first_sub.proxy().child("x").get(timeout=WAIT).tell(Crash())
    assert world.wait_count("exited sub", 1)
    tree.settle()
    assert world.take() == ["crash x", "stop z", "start x", "start z"]
    rows = tree.children()
    assert rows["sub"].ref is not first_sub
    assert (rows["sub"].restarts, rows["z"].restarts) == (1, 1)
    assert rows["sub"].alive


# -- the guarantees that make a Pykka actor an OTP process -------------------------


def test_an_error_in_an_asked_call_goes_to_the_caller_not_the_child(
    abcd: Tree, world: World
) -> None:
    """ask: the caller gets the exception; the child is not restarted."""
    with pytest.raises(LookupError, match="asked"):
        abcd.child("b").proxy().fail(LookupError("asked")).get(timeout=WAIT)
    assert world.take() == []
    assert abcd.children()["b"].restarts == 0


def test_an_unknown_message_crashes_the_child_like_otp(
    abcd: Tree, world: World
) -> None:
    """A told message the child does not understand is a crash."""
    abcd.tell("d", "what is this?")
    assert world.take() == ["crash d", "start d"]


@pytest.mark.parametrize("error", [SystemExit("bye"), KeyboardInterrupt()])
def test_a_base_exception_in_a_told_handler_crashes_only_that_child(
    abcd: Tree, world: World, error: BaseException
) -> None:
    """Pykka stops every actor in the process on a BaseException; a child
    turns it into its own crash, which the supervisor restarts."""
    bystander = pykka.ThreadingActor.start()
    abcd.tell("d", Raise(error))
    assert world.take() == ["crash d", "start d"]
    assert bystander.is_alive()
    assert abcd.ref.is_alive()
    assert abcd.children()["d"].restarts == 1
    bystander.stop()


def test_a_base_exception_in_an_asked_call_reaches_the_caller_as_an_error(
    abcd: Tree, world: World
) -> None:
    """ask: the caller gets ChildCrashError (its cause the original), and the
    child lives on."""
    child = abcd.child("b")
    with pytest.raises(ChildCrashError, match="SystemExit") as info:
        child.proxy().fail(SystemExit("asked")).get(timeout=WAIT)
    assert isinstance(info.value.__cause__, SystemExit)
    assert child.is_alive()
    assert world.take() == []


@pytest.mark.parametrize("hook", ["start", "stop", "failure"])
def test_a_base_exception_in_a_lifecycle_hook_never_escapes_the_child(
    world: World, hook: str
) -> None:
    """SystemExit in on_child_start, on_child_stop or on_child_failure is the
    child's own failure: its exit is reported at once, its thread ends, the
    tree carries on (or stops in order), and no other actor is touched."""
    bystander = pykka.ThreadingActor.start()
    raised = threading.Event()

    class Fragile(Worker):
        def on_child_start(self) -> None:
            if hook == "start" and not raised.is_set():
                raised.set()
                raise SystemExit("in on_child_start")
            super().on_child_start()

        def on_child_stop(self) -> None:
            super().on_child_stop()
            if hook == "stop":
                raise SystemExit("in on_child_stop")

        def on_child_failure(self, error: BaseException | None) -> None:
            super().on_child_failure(error)
            if hook == "failure":
                raise SystemExit("in on_child_failure")

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return Fragile.start(
            name="f",
            world=world,
            siblings={},
            link=ReportingLink(ctx.link, "f", world),
        )

    specs = [worker(world, "a"), ChildSpec("f", start), worker(world, "z")]
    if hook == "start":
        # The first start fails: the tree cannot start, promptly and cleanly.
        watch = StartWatch()
        ref = Supervisor.start(specs=specs, link=watch)
        assert watch.ready.wait(WAIT)
        assert isinstance(watch.start_error, ChildStartError)
        assert isinstance(watch.start_error.__cause__, ChildCrashError)
        assert isinstance(watch.start_error.__cause__.__cause__, SystemExit)
        assert ref.actor_stopped.wait(WAIT)
        assert world.take() == ["start a", "stop a"]
    elif hook == "stop":
        tree = start_tree(world, specs)
        world.take()
        tree.ref.stop(block=True, timeout=WAIT)
        assert world.take() == ["stop z", "stop f", "stop a"]
        assert tree.exits == [SupervisorExit("stopped", gave_up=False)]
    else:
        tree = start_tree(world, specs)
        world.take()
        tree.crash("f")
        assert world.take() == ["crash f", "stop z", "start f", "start z"]
        assert tree.ref.is_alive()
        tree.ref.stop(block=True, timeout=WAIT)
    assert bystander.is_alive()
    assert [ref for ref in pykka.ActorRegistry.get_all() if ref is not bystander] == []
    bystander.stop()


# -- the documented example (docs/supervision.md) ----------------------------------

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "supervision.md"


def documented_example() -> tuple[str, str]:
    """The example program in docs/supervision.md, and the output it shows."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## A complete example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    output = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert code is not None
    assert output is not None
    return code.group(1), output.group(1)


def test_the_documented_example_runs_as_shown_with_supervision_alone(
    tmp_path: Path,
) -> None:
    """docs/supervision.md's program prints what the page shows, run against
    a copy of statsyard/supervision/ with nothing else of StatsYard beside
    it: the part is reusable as it is."""
    package = tmp_path / "statsyard"
    shutil.copytree(
        ROOT / "statsyard" / "supervision",
        package / "supervision",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (package / "__init__.py").write_text("", encoding="utf-8")
    code, shown = documented_example()
    (tmp_path / "counter_app.py").write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert run("counter_app.py") == shown
    loaded = run(
        "-c",
        "import json, sys, statsyard, counter_app; print(statsyard.__file__); "
        "print(json.dumps([m for m in sys.modules if m.split('.')[0] == 'statsyard']))",
    ).splitlines()
    assert loaded[0] == str(package / "__init__.py")
    modules = json.loads(loaded[1])
    assert "statsyard.supervision.supervisor" in modules
    assert all(
        m == "statsyard" or m.startswith("statsyard.supervision") for m in modules
    )
