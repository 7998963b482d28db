"""Tests of the deployment files: etc/statsyard.service and the Dockerfile."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "etc" / "statsyard.service"


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_the_unit_runs_as_its_own_user_and_drains_before_a_kill() -> None:
    """Dedicated user, /var/lib/statsyard, restart on failure, time to drain."""
    unit = _directives(UNIT.read_text())
    assert unit["User"] == ["statsyard"]
    assert unit["StateDirectory"] == ["statsyard"]
    assert unit["Environment"] == ["STATSYARD_STORAGE_DATA_DIR=/var/lib/statsyard/data"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2"]  # a config error: no loop
    assert unit["KillSignal"] == ["SIGTERM"]
    assert int(unit["TimeoutStopSec"][0]) >= 60
    for hardening in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp"):
        assert unit[hardening][0] in ("yes", "strict"), hardening


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package systemd)",
)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` reports nothing about the unit.

    ExecStart points at this interpreter, since verify checks that the
    program exists; everything else is the file as shipped.
    """
    text = re.sub(
        r"(?m)^ExecStart=\S+",
        f"ExecStart={sys.executable} -m statsyard",
        UNIT.read_text(),
    )
    unit = tmp_path / "statsyard.service"
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [line for line in done.stderr.splitlines() if "statsyard" in line]
    assert done.returncode == 0, done.stderr
    assert ours == []


def test_the_dockerfile_runs_unprivileged_with_a_data_volume_and_the_ports() -> None:
    """Slim Python base, non-root user, the data volume, 2003 tcp/udp and 8080."""
    lines = [
        line.strip()
        for line in re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text()).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert froms and all(re.fullmatch(r"python:3\.1\d-slim", f) for f in froms)
    assert "USER statsyard" in lines
    assert 'VOLUME ["/var/lib/statsyard"]' in lines
    assert "EXPOSE 2003/tcp 2003/udp 8080/tcp" in lines
    env = next(line for line in lines if line.startswith("ENV "))
    assert "STATSYARD_STORAGE_DATA_DIR=/var/lib/statsyard/data" in env
    assert "STATSYARD_GRAPHITE_HOST=0.0.0.0" in env
    assert lines[-2:] == ['ENTRYPOINT ["statsyard"]', 'CMD ["run"]']
    user_at = lines.index("USER statsyard")
    assert all(not line.startswith("RUN ") for line in lines[user_at:])
