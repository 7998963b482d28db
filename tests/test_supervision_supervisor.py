"""Supervisor: rest-for-one restarts, restart intensity, and orderly shutdown."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from statsyard.supervision import (
    ChildActor,
    ChildCrashError,
    ChildSpec,
    ChildStartError,
    Link,
    StartContext,
    Supervisor,
    SupervisorExit,
    TreeStoppedError,
)
from tests.conftest import RecordingLink

WAIT = 5.0


class RecordingStartLink(RecordingLink):
    """A recording link that also notes when the actor has started."""

    def __init__(self) -> None:
        super().__init__()
        self.started_event = threading.Event()

    def started(self) -> None:
        self.started_event.set()


class Journal:
    """Thread-safe record of lifecycle events, with a way to wait for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.events: list[str] = []

    def add(self, event: str) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[str]], bool], timeout: float = WAIT
    ) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.events), timeout)

    def take(self) -> list[str]:
        with self._cond:
            events, self.events = self.events, []
            return events


class Probe(ChildActor):
    """A child that journals its start and stop and remembers its siblings."""

    def __init__(
        self, *, name: str, journal: Journal, siblings: dict[str, Any], link: Link
    ) -> None:
        super().__init__(link=link)
        self.name = name
        self.journal = journal
        self.sibling_refs = siblings

    def on_child_start(self) -> None:
        self.journal.add(f"start {self.name}")

    def on_child_stop(self) -> None:
        self.journal.add(f"stop {self.name}")

    def on_child_failure(self, error: BaseException | None) -> None:
        self.journal.add(f"crash {self.name}")

    def siblings(self) -> dict[str, Any]:
        return self.sibling_refs

    def run(self, fn: Callable[[], Any]) -> Any:
        return fn()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Run):
            return message.fn()
        return super().on_receive(message)


class Run:
    """Test message: call ``fn`` inside the actor."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn


def probe_spec(name: str, journal: Journal, **kwargs: Any) -> ChildSpec:
    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return Probe.start(
            name=name, journal=journal, siblings=dict(ctx.siblings), link=ctx.link
        )

    return ChildSpec(name, start, **kwargs)


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def exits() -> list[SupervisorExit]:
    return []


@pytest.fixture
def tree(
    journal: Journal, exits: list[SupervisorExit]
) -> Iterator[pykka.ActorRef[Supervisor]]:
    ref = Supervisor.start(
        specs=[probe_spec(n, journal) for n in ("a", "b", "c", "d")],
        max_restarts=3,
        max_seconds=5.0,
        on_exit=exits.append,
    )
    assert journal.wait_for(lambda e: "start d" in e)
    journal.take()
    yield ref
    ref.stop(block=True, timeout=WAIT)


def count_is(event: str, count: int) -> Callable[[list[str]], bool]:
    """A journal predicate: ``event`` was journaled exactly ``count`` times."""
    return lambda events: events.count(event) == count


def crash(supervisor: pykka.ActorRef[Supervisor], child_id: str) -> None:
    supervisor.proxy().child(child_id).get(timeout=WAIT).tell("unknown message")


def test_children_start_in_order_and_stop_in_reverse(journal: Journal) -> None:
    """Start order is spec order; stopping the supervisor stops them in reverse."""
    ref = Supervisor.start(specs=[probe_spec(n, journal) for n in ("a", "b", "c")])
    assert journal.wait_for(lambda e: len(e) == 3)
    assert journal.take() == ["start a", "start b", "start c"]
    ref.stop(block=True, timeout=WAIT)
    assert journal.take() == ["stop c", "stop b", "stop a"]


@pytest.mark.parametrize(
    ("crashed", "restarted"),
    [
        ("a", ["a", "b", "c", "d"]),
        ("b", ["b", "c", "d"]),
        ("c", ["c", "d"]),
        ("d", ["d"]),
    ],
)
def test_rest_for_one_restarts_the_child_and_those_after_it(
    tree: pykka.ActorRef[Supervisor],
    journal: Journal,
    crashed: str,
    restarted: list[str],
) -> None:
    """A crash stops the later children in reverse, then restarts all in order."""
    before = {c.id: c.ref for c in tree.proxy().which_children().get(timeout=WAIT)}
    crash(tree, crashed)
    last = f"start {restarted[-1]}"
    assert journal.wait_for(lambda e: last in e)
    later = restarted[1:]
    expected = (
        [f"crash {crashed}"]
        + [f"stop {n}" for n in reversed(later)]
        + [f"start {n}" for n in restarted]
    )
    assert journal.take() == expected
    children = tree.proxy().which_children().get(timeout=WAIT)
    for child in children:
        assert child.alive
        assert (child.ref is not before[child.id]) == (child.id in restarted)
        assert child.restarts == (1 if child.id in restarted else 0)


def test_a_restart_is_logged_at_info_with_child_reason_and_what_restarted(
    tree: pykka.ActorRef[Supervisor],
    journal: Journal,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One INFO line (and structured fields for --log-format json) per restart."""
    with caplog.at_level(logging.INFO, logger="statsyard.supervision.supervisor"):
        crash(tree, "b")
        assert journal.wait_for(lambda e: "start d" in e)
        tree.proxy().which_children().get(timeout=WAIT)  # the restart is done
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Restarted")]
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith(
        "Restarted b, c, d after b crashed (UnknownMessageError: "
    )
    fields = record.__dict__  # logging puts ``extra`` there
    assert fields["child"] == "b"
    assert fields["restarted"] == ["b", "c", "d"]
    assert fields["reason"].startswith("crashed (")


def test_restarted_children_get_fresh_references_to_their_siblings(
    tree: pykka.ActorRef[Supervisor], journal: Journal
) -> None:
    """After b restarts, c and d hold b's new ref, not the dead one."""
    crash(tree, "b")
    assert journal.wait_for(lambda e: "start d" in e)
    proxy = tree.proxy()
    new_b = proxy.child("b").get(timeout=WAIT)
    for name in ("c", "d"):
        siblings = (
            proxy.child(name).get(timeout=WAIT).proxy().siblings().get(timeout=WAIT)
        )
        assert siblings["b"] is new_b
        assert siblings["b"].is_alive()


def test_exceeding_the_restart_intensity_stops_the_tree_and_tells_the_host(
    tree: pykka.ActorRef[Supervisor], journal: Journal, exits: list[SupervisorExit]
) -> None:
    """The 4th restart within 5 s stops every child in reverse and reports why."""
    for round_ in range(3):
        crash(tree, "c")
        assert journal.wait_for(count_is("start d", round_ + 1))
    journal.take()
    crash(tree, "c")
    assert tree.actor_stopped.wait(WAIT)
    assert journal.take() == ["crash c", "stop d", "stop b", "stop a"]
    assert len(exits) == 1
    assert exits[0].gave_up
    assert exits[0].child_id == "c"
    assert "more than 3 restarts within 5 s" in exits[0].reason


def test_a_plain_stop_of_a_permanent_child_is_restarted(
    tree: pykka.ActorRef[Supervisor], journal: Journal
) -> None:
    """Permanent children come back even after a normal exit."""
    tree.proxy().child("d").get(timeout=WAIT).stop()
    assert journal.wait_for(lambda e: e[-1:] == ["start d"])
    assert journal.take() == ["stop d", "start d"]


def test_temporary_and_transient_children(journal: Journal) -> None:
    """Temporary: never restarted. Transient: restarted after a crash only."""
    ref = Supervisor.start(
        specs=[
            probe_spec("temp", journal, restart="temporary"),
            probe_spec("trans", journal, restart="transient"),
        ]
    )
    assert journal.wait_for(lambda e: "start trans" in e)
    proxy = ref.proxy()
    proxy.child("trans").get(timeout=WAIT).tell("crash it")
    assert journal.wait_for(lambda e: e.count("start trans") == 2)
    proxy.child("trans").get(timeout=WAIT).stop()
    proxy.child("temp").get(timeout=WAIT).stop()
    assert journal.wait_for(lambda e: "stop temp" in e and e.count("stop trans") >= 1)
    children = {c.id: c for c in proxy.which_children().get(timeout=WAIT)}
    assert not children["temp"].alive
    assert not children["trans"].alive
    ref.stop(block=True, timeout=WAIT)


def test_terminate_and_restart_child_by_name(
    tree: pykka.ActorRef[Supervisor], journal: Journal
) -> None:
    """terminate_child keeps a child down; restart_child brings it (and later) back."""
    proxy = tree.proxy()
    proxy.terminate_child("c").get(timeout=WAIT)
    assert journal.take() == ["stop c"]
    with pytest.raises(KeyError):
        proxy.child("c").get(timeout=WAIT)
    proxy.restart_child("c").get(timeout=WAIT)
    assert journal.take() == ["stop d", "start c", "start d"]
    with pytest.raises(KeyError):
        proxy.restart_child("nope").get(timeout=WAIT)


def test_the_child_table_follows_restarts_and_closes_with_the_tree(
    journal: Journal,
) -> None:
    """Outside callers find the living child by name, and learn when the tree ends."""
    ref = Supervisor.start(specs=[probe_spec("a", journal)])
    table = ref.proxy().table.get(timeout=WAIT)
    first = table.get("a", timeout=WAIT)
    first.tell("crash")
    assert journal.wait_for(lambda e: e.count("start a") == 2)
    second = table.get("a", timeout=WAIT)
    assert second is not first
    assert second.is_alive()
    ref.stop(block=True, timeout=WAIT)
    with pytest.raises(TreeStoppedError):
        table.get("a", timeout=0.1)


def raise_system_exit() -> None:
    raise SystemExit("boom")


def test_a_base_exception_in_a_child_crashes_only_that_child(
    tree: pykka.ActorRef[Supervisor], journal: Journal
) -> None:
    """SystemExit in a handler must not make Pykka stop every actor in the process."""
    bystander = pykka.ThreadingActor.start()
    child = tree.proxy().child("d").get(timeout=WAIT)
    # Asked: the caller gets an ordinary exception and the child lives on.
    with pytest.raises(ChildCrashError, match="SystemExit"):
        child.proxy().run(raise_system_exit).get(timeout=WAIT)
    assert child.is_alive()
    # Told: only that child crashes, and the supervisor restarts it.
    child.tell(Run(raise_system_exit))
    assert journal.wait_for(lambda e: e[-2:] == ["crash d", "start d"])
    assert bystander.is_alive()
    assert tree.is_alive()
    bystander.stop()


class Stubborn(Probe):
    """A child whose stop (or current handler) blocks until ``release`` is set."""

    release = threading.Event()

    def on_child_stop(self) -> None:
        self.journal.add(f"stopping {self.name}")
        self.release.wait(WAIT)
        super().on_child_stop()


@pytest.mark.parametrize("stuck_in", ["on_stop", "a handler"])
def test_a_child_that_misses_its_stop_deadline_is_never_started_twice(
    journal: Journal, caplog: pytest.LogCaptureFixture, stuck_in: str
) -> None:
    """Python cannot kill a thread: when a child will not stop within its
    shutdown deadline, no second incarnation starts beside it; the tree
    stops and says why, at ERROR."""
    release = threading.Event()
    exits: list[SupervisorExit] = []

    class Slow(Stubborn):
        pass

    Slow.release = release

    def start_slow(ctx: StartContext) -> pykka.ActorRef[Any]:
        return Slow.start(name="b", journal=journal, siblings={}, link=ctx.link)

    ref = Supervisor.start(
        specs=[probe_spec("a", journal), ChildSpec("b", start_slow, shutdown=0.2)],
        on_exit=exits.append,
    )
    try:
        assert journal.wait_for(lambda e: "start b" in e)
        b = ref.proxy().child("b").get(timeout=WAIT)
        if stuck_in == "a handler":
            b.tell(Run(lambda: release.wait(WAIT)))
        crash(ref, "a")  # rest-for-one must stop b before restarting a
        assert ref.actor_stopped.wait(WAIT)
        assert journal.events.count("start a") == 1
        assert journal.events.count("start b") == 1
        assert len(exits) == 1
        assert exits[0].gave_up
        assert exits[0].child_id == "b"
        assert "b did not stop within 0.2 s" in exits[0].reason
        assert any(
            r.levelname == "ERROR" and "did not stop within" in r.getMessage()
            for r in caplog.records
        )
    finally:
        release.set()


def failing_spec(name: str, journal: Journal, error: Exception) -> ChildSpec:
    """A child whose on_child_start always raises ``error``."""

    class Failing(Probe):
        def on_child_start(self) -> None:
            journal.add(f"attempt {self.name}")
            raise error

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return Failing.start(name=name, journal=journal, siblings={}, link=ctx.link)

    return ChildSpec(name, start)


def test_a_child_failing_while_the_tree_starts_fails_the_start_at_once(
    journal: Journal,
) -> None:
    """OTP's rule: no restarts while starting; the started children stop in
    reverse order and the start reports the child's own error."""
    cause = OSError(98, "Address already in use")
    before = set(threading.enumerate())
    link = RecordingStartLink()
    ref = Supervisor.start(
        specs=[
            probe_spec("a", journal),
            probe_spec("b", journal),
            failing_spec("c", journal, cause),
            probe_spec("d", journal),
        ],
        max_restarts=100,
        link=link,
    )
    assert link.exited_event.wait(WAIT)
    assert ref.actor_stopped.wait(WAIT)
    assert journal.take() == ["start a", "start b", "attempt c", "stop b", "stop a"]
    crashed, error = link.exits[0]
    assert crashed
    assert isinstance(error, ChildStartError)
    assert error.child_id == "c"
    assert error.__cause__ is cause
    assert "c could not start" in str(error)
    for thread in set(threading.enumerate()) - before:
        thread.join(WAIT)
    assert set(threading.enumerate()) - before == set()


def test_a_child_failing_to_restart_counts_against_the_intensity(
    journal: Journal,
) -> None:
    """After the tree is up, a child whose restart fails is retried like a
    crash, until the restart intensity is passed."""
    attempts: list[int] = []
    exits: list[SupervisorExit] = []

    class FailsAfterFirst(Probe):
        def on_child_start(self) -> None:
            attempts.append(1)
            if len(attempts) > 1:
                raise RuntimeError("cannot start again")
            super().on_child_start()

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return FailsAfterFirst.start(
            name="x", journal=journal, siblings={}, link=ctx.link
        )

    ref = Supervisor.start(
        specs=[ChildSpec("x", start)],
        max_restarts=3,
        max_seconds=60.0,
        on_exit=exits.append,
    )
    assert journal.wait_for(lambda e: "start x" in e)
    crash(ref, "x")
    assert ref.actor_stopped.wait(WAIT)
    assert len(attempts) == 4  # the first start, then three failed restarts
    assert exits[0].gave_up
    assert "more than 3 restarts" in exits[0].reason


def test_a_child_whose_start_outlasts_its_start_timeout_fails_the_start(
    journal: Journal,
) -> None:
    """A start that hangs is bounded by ChildSpec.start_timeout."""
    release = threading.Event()

    class Hanging(Probe):
        def on_child_start(self) -> None:
            release.wait(WAIT)

    def start(ctx: StartContext) -> pykka.ActorRef[Any]:
        return Hanging.start(name="h", journal=journal, siblings={}, link=ctx.link)

    link = RecordingStartLink()
    try:
        ref = Supervisor.start(
            specs=[
                probe_spec("a", journal),
                ChildSpec("h", start, start_timeout=0.2, shutdown=0.1),
            ],
            link=link,
        )
        assert link.exited_event.wait(WAIT)
        assert ref.actor_stopped.wait(WAIT)
        _, error = link.exits[0]
        assert isinstance(error, ChildStartError)
        assert "h did not start within 0.2 s" in str(error)
        assert journal.take() == ["start a", "stop a"]
    finally:
        release.set()
