"""Real and fake destinations for the forwarding tests, all on 127.0.0.1.

- :class:`Prometheus`: Debian's ``prometheus`` with the remote write receiver,
  its own temporary storage and a free port (installed by ``.ci/run``).
- :class:`CarbonCache`: Debian's ``graphite-carbon`` with its own config in a
  temporary directory and free ports; :meth:`CarbonCache.fetch` reads whisper
  files with the ``whisper`` module (carbon's own file format library).
- :class:`RecordingReceiver`: a tiny remote write server (``http.server``)
  that decodes every request and answers what the test scripts (500s, a 400,
  a slow answer), to count duplicates and failures exactly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cramjam
import pytest
import urllib3
import whisper

from statsyard.app import StatsYard
from statsyard.config import Config
from statsyard.forward.remote_write import WriteRequest

START_TIMEOUT = 30.0

Sample = tuple[str, str, int, float]
"""``(__name__, entity label, timestamp ms, value)``."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll an outside process until ``check()``; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        pause.wait(0.05)


def _needs(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(
            f"{binary} not installed (Debian package {package}; .ci/run installs it)"
        )
    return path


class Prometheus:
    """A Prometheus server accepting remote write, on its own port and storage."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.binary = _needs("prometheus", "prometheus")
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.http = urllib3.PoolManager(retries=False, timeout=5.0)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        return f"{self.base}/api/v1/write"

    def start(self) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1h\n")
        log = open(self.workdir / "prometheus.log", "ab")  # noqa: SIM115 (kept by the process)
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-remote-write-receiver",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_until(self._ready, START_TIMEOUT, "Prometheus to be ready")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            text = (self.workdir / "prometheus.log").read_text()[-2000:]
            pytest.fail(f"Prometheus exited with {self.process.returncode}: {text}")
        try:
            return self.http.request("GET", f"{self.base}/-/ready").status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def api(self, path: str, **params: str) -> Any:
        response = self.http.request("GET", f"{self.base}{path}", fields=params)
        body = json.loads(response.data)
        assert body["status"] == "success", body
        return body["data"]

    def samples(
        self, selector: str, at: float
    ) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
        """Raw samples of a range selector evaluated at ``at`` (s), by label set."""
        data = self.api("/api/v1/query", query=selector, time=f"{at:.3f}")
        return {
            tuple(sorted(series["metric"].items())): [
                (round(float(t) * 1000), float(v)) for t, v in series["values"]
            ]
            for series in data["result"]
        }


class CarbonCache:
    """A carbon-cache with whisper files at 1-second resolution, on free ports."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.binary = _needs("carbon-cache", "graphite-carbon")
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def whisper_dir(self) -> Path:
        return self.workdir / "storage" / "whisper"

    def start(self) -> CarbonCache:
        work = self.workdir
        work.mkdir(parents=True, exist_ok=True)
        (work / "storage-schemas.conf").write_text(
            "[all]\npattern = .*\nretentions = 1s:1d\n"
        )
        (work / "carbon.conf").write_text(
            "[cache]\n"
            f"STORAGE_DIR = {work}/storage/\n"
            f"LOCAL_DATA_DIR = {work}/storage/whisper/\n"
            f"WHITELISTS_DIR = {work}/storage/lists/\n"
            f"CONF_DIR = {work}/\n"
            f"LOG_DIR = {work}/log/\n"
            f"PID_DIR = {work}/\n"
            "DATABASE = whisper\n"
            "ENABLE_LOGROTATION = False\n"
            "MAX_CACHE_SIZE = inf\n"
            "MAX_UPDATES_PER_SECOND = 100000\n"
            "MAX_CREATES_PER_MINUTE = inf\n"
            "LINE_RECEIVER_INTERFACE = 127.0.0.1\n"
            f"LINE_RECEIVER_PORT = {self.port}\n"
            "ENABLE_UDP_LISTENER = False\n"
            "PICKLE_RECEIVER_INTERFACE = 127.0.0.1\n"
            f"PICKLE_RECEIVER_PORT = {free_port()}\n"
            "CACHE_QUERY_INTERFACE = 127.0.0.1\n"
            f"CACHE_QUERY_PORT = {free_port()}\n"
            "WHISPER_AUTOFLUSH = True\n"
            "ENABLE_TAGS = True\n"
            "TAG_UPDATE_INTERVAL = 1000000\n"
        )
        log = open(work / "carbon.out", "ab")  # noqa: SIM115 (kept by the process)
        self.process = subprocess.Popen(
            [self.binary, f"--config={work}/carbon.conf", "--nodaemon", "start"],
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_until(self._ready, START_TIMEOUT, "carbon-cache to listen")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            text = (self.workdir / "carbon.out").read_text()[-2000:]
            pytest.fail(f"carbon-cache exited with {self.process.returncode}: {text}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def whisper_file(self, path: str) -> Path:
        """Where carbon keeps the series ``path`` (tagged ones by their hash)."""
        if ";" in path:
            digest = hashlib.sha256(path.encode()).hexdigest()
            return (
                self.whisper_dir
                / "_tagged"
                / digest[:3]
                / digest[3:6]
                / f"{digest}.wsp"
            )
        return self.whisper_dir / (path.replace(".", "/") + ".wsp")

    def fetch(self, path: str, start: int, until: int) -> dict[int, float]:
        """The non-empty points (second -> value) of series ``path``."""
        file = self.whisper_file(path)
        if not file.exists():
            return {}
        fetched = whisper.fetch(str(file), start - 1, until)
        if fetched is None:
            return {}
        (first, _end, step), values = fetched
        return {
            first + i * step: value
            for i, value in enumerate(values)
            if value is not None
        }


class RecordingReceiver:
    """A remote write endpoint that records what it gets and answers as told.

    ``answers`` maps a request number (from 1) to a status code; others get
    204. ``delay`` seconds pass before each answer.
    """

    def __init__(self) -> None:
        self.requests: list[list[Sample]] = []
        self.refused: list[list[Sample]] = []
        self.statuses: list[int] = []
        self.headers: list[dict[str, str]] = []
        self.answers: dict[int, int] = {}
        self.default_status = 204
        self.delay = 0.0
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = WriteRequest()
                request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
                samples: list[Sample] = []
                for series in request.timeseries:
                    labels = {label.name: label.value for label in series.labels}
                    samples.extend(
                        (
                            labels["__name__"],
                            labels.get("entity", ""),
                            s.timestamp,
                            s.value,
                        )
                        for s in series.samples
                    )
                if receiver.delay:
                    time.sleep(receiver.delay)  # a slow destination, not a wait
                with receiver.lock:
                    number = len(receiver.statuses) + 1
                    status = receiver.answers.get(number, receiver.default_status)
                    receiver.statuses.append(status)
                    receiver.headers.append(
                        {k.lower(): v for k, v in self.headers.items()}
                    )
                    if status < 300:
                        receiver.requests.append(samples)
                    else:
                        receiver.refused.append(samples)
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/api/v1/write"

    def start(self) -> RecordingReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def accepted(self) -> list[Sample]:
        """Every sample of every accepted request, in arrival order."""
        with self.lock:
            return [s for request in self.requests for s in request]

    def wait_requests(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` requests were answered (any status)."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.statuses) >= count, timeout)


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    """A recording remote write endpoint, stopped at teardown."""
    peer = RecordingReceiver().start()
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """One real Prometheus for the session (tests use their own metric names)."""
    peer = Prometheus(tmp_path_factory.mktemp("prometheus")).start()
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def carbon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CarbonCache]:
    """One real carbon-cache for the session."""
    peer = CarbonCache(tmp_path_factory.mktemp("carbon")).start()
    yield peer
    peer.stop()


@pytest.fixture
def yards() -> Iterator[list[StatsYard]]:
    """StatsYards a forwarding test starts; stopped at teardown."""
    started: list[StatsYard] = []
    yield started
    for yard in started:
        yard.stop(timeout=30.0)


def start_forwarding(
    yards: list[StatsYard],
    data_dir: Path,
    *,
    forward: Sequence[Mapping[str, Any]] = (),
    storage: Mapping[str, Any] | None = None,
    batch_size: int,
    **options: Any,
) -> StatsYard:
    """Start a yard forwarding to ``forward`` (``[[forward]]`` tables)."""
    settings = Config.of(forward=list(forward), storage=dict(storage or {}))
    options.setdefault("ship_metrics", False)
    yard = StatsYard(settings, data_dir=data_dir, batch_size=batch_size, **options)
    yards.append(yard)
    return yard.start()
