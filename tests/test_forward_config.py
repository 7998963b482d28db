"""[[forward]] in the configuration file, `statsyard config`, and the service."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from statsyard.cli.main import main
from statsyard.config import load_config, render_config
from statsyard.forward import ForwardSettings
from tests._peers import RecordingReceiver, receiver

__all__ = ["receiver"]

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0

TABLES = """
[pipeline]
batch_size = 100

[[forward]]
name = "mimir"
kind = "prometheus"
url = "http://127.0.0.1:9090/api/v1/write"
entity_label = "instance"
extra_labels = { job = "statsyard" }

[[forward]]
name = "relay"
kind = "graphite"
address = "127.0.0.1:2013"
entity_as = "prefix"
"""


def test_forward_tables_load_render_and_load_back(tmp_path: Path) -> None:
    """Each [[forward]] becomes settings; the rendering loads to the same."""
    path = tmp_path / "s.toml"
    path.write_text(TABLES)
    config = load_config(path, environ={})
    assert [f.name for f in config.forward] == ["mimir", "relay"]
    assert config.forward[0] == ForwardSettings(
        name="mimir",
        kind="prometheus",
        url="http://127.0.0.1:9090/api/v1/write",
        entity_label="instance",
        extra_labels={"job": "statsyard"},
    )
    rendered = render_config(config)
    assert re.search(
        rf'entity_label = "instance" +# file {re.escape(str(path))}', rendered
    )
    assert re.search(r'entity_as = "prefix" +# file', rendered)
    assert re.search(r"max_samples = 5000 +# default", rendered)
    again = tmp_path / "again.toml"
    again.write_text(rendered)
    assert load_config(again, environ={}).forward == config.forward


def test_a_malformed_destination_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad [[forward]] stops the service before anything starts."""
    path = tmp_path / "bad.toml"
    path.write_text('[[forward]]\nname = "m"\nkind = "prometheus"\nurl = "ftp://x"\n')
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: forward[0] 'm'.url: expected an http:// or https:// URL" in err


def test_the_service_forwards_graphite_input_and_delivers_it_before_exiting(
    tmp_path: Path, receiver: RecordingReceiver
) -> None:
    """`statsyard run` with a [[forward]]: lines in, remote write out, clean exit."""
    config = tmp_path / "s.toml"
    config.write_text(
        f'[[forward]]\nname = "rec"\nkind = "prometheus"\nurl = "{receiver.url}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATSYARD_")}
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "statsyard",
            "--config",
            str(config),
            "--storage-data-dir",
            str(tmp_path / "data"),
            "--graphite-tcp-port",
            "0",
            "--graphite-udp-port",
            "0",
            "--metrics-enabled",
            "false",
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        for line in process.stderr or ():
            lines.put(line)

    threading.Thread(target=read_lines, daemon=True).start()

    def wait_for(pattern: str) -> re.Match[str]:
        while True:
            found = re.search(pattern, lines.get(timeout=TIMEOUT))
            if found:
                return found

    try:
        port = wait_for(r"Graphite listener on tcp 127\.0\.0\.1:(\d+)").group(1)
        wait_for(r"Forwarder rec starts from now")
        with socket.create_connection(("127.0.0.1", int(port)), TIMEOUT) as sock:
            sock.sendall(
                b"a.b;entity=web-1 1 1700000000\na.b;entity=web-1 2 1700000001\n"
            )
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
    assert receiver.accepted() == [
        ("a_b", "web-1", 1_700_000_000_000, 1.0),
        ("a_b", "web-1", 1_700_000_001_000, 2.0),
    ]
