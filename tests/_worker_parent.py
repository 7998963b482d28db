"""A parent process for tests/test_child_process.py: start a worker, report, wait.

Usage: ``python _worker_parent.py idle|busy|thread``. Prints the worker's pid,
then waits on stdin forever, to be killed with SIGKILL by the test. In
``thread`` mode the worker is started by a thread that then ends, while
this process lives on.
"""

from __future__ import annotations

import sys
import threading

from statsyard._child_process import WorkerProcess

mode = sys.argv[1]
workers: list[WorkerProcess] = []


def start() -> None:
    worker = WorkerProcess(
        "_worker_handlers:pid" if mode != "busy" else "_worker_handlers:block"
    )
    if mode == "busy":
        worker.send(b"x")
    else:
        worker.request(b"x", timeout=30)
    workers.append(worker)


if mode == "thread":
    starter = threading.Thread(target=start)
    starter.start()
    starter.join()
else:
    start()
print(workers[0].pid, flush=True)
sys.stdin.read()
