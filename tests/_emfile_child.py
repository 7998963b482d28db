"""Run by test_graphite_listener in a subprocess: a listener out of descriptors.

Lowers RLIMIT_NOFILE so that the listener's next ``accept()`` fails with
EMFILE, counts the I/O thread's wake-ups over a one-second window, frees
descriptors and checks that service resumes. Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statsyard.graphite.listener import GraphiteListener
from tests._graphite import QueueSink, RecordingObserver

TIMEOUT = 10.0
WINDOW = 1.0


def main() -> int:
    """Starve the listener of descriptors, watch it, feed it again."""
    sink = QueueSink()
    observer = RecordingObserver()
    ref = GraphiteListener.start(
        queue=sink.ref, tcp_port=0, udp_port=0, observer=observer, idle_timeout=0
    )
    proxy = ref.proxy()
    report: dict[str, object] = {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        tcp, _ = proxy.addresses().get(timeout=TIMEOUT)
        held = [socket.create_connection(tcp, timeout=TIMEOUT) for _ in range(3)]
        assert observer.wait_for("opened", 3)
        late = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # its fd, now
        late.settimeout(TIMEOUT)
        probe = os.dup(0)  # the lowest free descriptor: no new one may open
        os.close(probe)
        resource.setrlimit(resource.RLIMIT_NOFILE, (probe, hard))
        late.connect(tcp)  # the kernel completes it; accept() cannot
        report["failed"] = observer.wait_for("accept_failed", 1)
        before = proxy.stats().get(timeout=TIMEOUT)
        threading.Event().wait(WINDOW)  # the window in which a busy loop shows
        after = proxy.stats().get(timeout=TIMEOUT)
        report["wakeups_in_window"] = after.wakeups - before.wakeups
        report["accept_failures_in_window"] = (
            after.accept_failures - before.accept_failures
        )
        report["opened_while_starved"] = after.connections_total
        held[0].close()  # frees two descriptors once the listener hangs up
        report["resumed"] = observer.wait_for("opened", 4)
        late.sendall(b"late 1 1700000000\n")
        report["stored"] = sink.wait_received(1)
        late.close()
        for sock in held[1:]:
            sock.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        ref.stop(timeout=TIMEOUT)
        sink.ref.stop(timeout=TIMEOUT)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
