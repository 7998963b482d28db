"""The service: ``statsyard run`` in the foreground, from one configuration.

:func:`run_service` runs a :class:`~statsyard.app.StatsYard` built from
the service's :class:`~statsyard.config.Config` until SIGINT or SIGTERM,
and drains it; :class:`SignalGate` decides what a signal does.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from statsyard.config import Config

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "SignalGate",
    "run_service",
    "tuned_gc_for_ingest",
]

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
"""The command did what was asked."""
EXIT_FAILED: Final = 1
"""The command ran and failed (or found damage); the message says why."""
GRAPHITE: Final = "graphite"
STOP_SIGNALS: Final = frozenset({signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def tuned_gc_for_ingest() -> Iterator[None]:
    """Make the cyclic garbage collector cheaper while this process ingests.

    Every point in flight is a freshly allocated object, so the default
    threshold (a collection every 700 allocations) spends a large share of
    ingest time scanning objects that are never garbage. The service and the
    stress run own their process, so they collect less often and freeze what
    start-up allocated. An embedding host decides this for itself. The
    previous settings come back on exit.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


class SignalGate:
    """What the service does with SIGINT/SIGTERM: the first stops, the second exits now.

    Signals are not handled by Python handlers (which run only when the main
    thread runs bytecode, and the kernel may deliver a process signal to any
    thread): :func:`run_service` blocks them in every thread and takes them
    with :func:`signal.sigtimedwait`, then calls the gate.

    Args:
        hard_exit: called with ``128 + signal`` on the second signal
            (default :func:`os._exit`: no cleanup, no draining).
    """

    def __init__(self, hard_exit: Callable[[int], object] = os._exit) -> None:
        self.stop = threading.Event()
        self.received: list[int] = []
        self._hard_exit = hard_exit

    def __call__(self, signum: int) -> None:
        """Handle one signal."""
        if self.received:
            os.write(2, b"statsyard: second signal, exiting now without draining\n")
            self._hard_exit(128 + signum)
            return
        self.received.append(signum)
        self.stop.set()


_WAIT_SLICE_S: Final = 1.0
"""How long the main thread waits for a signal before looking at the tree."""
_SECOND_SLICE_S: Final = 0.1
"""The same for the thread that takes a second signal while the tree stops."""


def _take_signals(gate: SignalGate, until: threading.Event, slice_s: float) -> None:
    """Wait for blocked stop signals and hand them to ``gate`` until ``until``."""
    while not until.is_set():
        info = signal.sigtimedwait(STOP_SIGNALS, slice_s)
        if info is not None:
            gate(info.si_signo)


def _start_failure(error: BaseException, config: Config) -> str:
    """One line saying why the service could not start, naming the port or path."""
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None:
        text = f"{error.strerror or error}: {error.filename}"
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    failed = cause if isinstance(cause, OSError) else error
    if (
        getattr(error, "child_id", None) == GRAPHITE
        and isinstance(failed, OSError)
        and config.graphite.enabled
    ):
        graphite = config.graphite
        text += (
            f" (the Graphite listener binds tcp {graphite.host}:{graphite.tcp_port} "
            f"and udp {graphite.host}:{graphite.udp_port}; "
            "graphite.tcp_port, graphite.udp_port)"
        )
    return text


class _HoldErrors(logging.Filter):
    """Holds back ERROR records while the tree starts.

    A child that fails to start is reported by Pykka (with a traceback) and
    by the supervisor, then raised by :meth:`StatsYard.start`; the service
    reports it once, in one line. If the start succeeds, the held records
    are logged after all; with ``--debug`` they always are.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.held.append(record)
            return False
        return True

    @contextlib.contextmanager
    def on_root_handlers(self) -> Iterator[None]:
        handlers = list(logging.getLogger().handlers)
        for handler in handlers:
            handler.addFilter(self)
        try:
            yield
        finally:
            for handler in handlers:
                handler.removeFilter(self)

    def release(self) -> None:
        held, self.held = self.held, []
        for record in held:
            logging.getLogger(record.name).handle(record)


def run_service(config: Config, *, debug: bool = False) -> int:
    """Run StatsYard in the foreground until SIGINT or SIGTERM; returns the exit status.

    The first signal stops input, drains the queue, writes and fsyncs
    everything accepted, ships a last round of metrics and stops the tree in
    reverse order. A second signal exits at once with status 128 + signal.

    SIGINT and SIGTERM are blocked before any thread starts, so every thread
    the tree starts inherits the mask and the kernel keeps them pending until
    this (main) thread takes them with :func:`signal.sigtimedwait`: a signal
    is never delivered to a worker thread where no handler would run. While
    the tree stops, a small thread takes a second signal the same way.

    A start-up failure (a busy port, a data directory in use or not a
    directory) is one CRITICAL line and exit status 1; ``debug`` also shows
    the errors and tracebacks the children logged on the way.
    """
    from statsyard.app import StatsYard  # only this command runs the tree
    from statsyard.exceptions import StatsYardError

    gate = SignalGate()
    stop = gate.stop
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        hold = _HoldErrors()
        try:
            with hold.on_root_handlers():
                yard = StatsYard(config, on_exit=lambda _exit: stop.set())
                yard.start()
        except (StatsYardError, OSError) as error:
            if debug:
                hold.release()
            logger.critical(
                "StatsYard could not start: %s", _start_failure(error, config)
            )
            return EXIT_FAILED
        except BaseException:
            hold.release()
            raise
        hold.release()
        logger.info(
            "StatsYard running (data in %s); SIGINT or SIGTERM stops it",
            config.storage.data_dir,
        )
        _take_signals(gate, stop, _WAIT_SLICE_S)
        gave_up = yard.wait_stopped(0)
        stopped = threading.Event()
        second = threading.Thread(
            target=_take_signals,
            args=(gate, stopped, _SECOND_SLICE_S),
            name="statsyard-second-signal",
            daemon=True,
        )
        second.start()
        try:
            if gate.received:
                logger.info(
                    "Received %s: stopping input, draining the queue",
                    signal.Signals(gate.received[0]).name,
                )
                if config.graphite.enabled and gave_up is None:
                    try:
                        yard.supervisor.terminate_child(GRAPHITE).get(timeout=15.0)
                    except Exception as error:  # noqa: BLE001 (deliberate: drain regardless)
                        logger.error("Could not stop the Graphite listener: %s", error)
            counts = yard.stop()
        finally:
            stopped.set()
            second.join(_SECOND_SLICE_S + 1.0)
        logger.info(
            "Summary: %d points accepted, %d written, %d invalid, %d lost",
            counts.pushed,
            counts.written,
            counts.invalid,
            counts.lost,
        )
        if gave_up is not None and gave_up.gave_up:
            logger.critical("StatsYard stopped by itself: %s", gave_up.reason)
            return EXIT_FAILED
        return EXIT_OK
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
