"""systemd/watchd.service: what the service needs of it (Type=notify with a watchdog, a fixed
user, the state directory and the key as a credential, a sandbox), `systemd-analyze verify`
and the sandbox exposure score (`systemd-analyze security --offline=true`, at 1.5 or lower).

The unit's ExecStart (/opt/watchd/bin/watchd) does not exist on a build machine, and verify
rightly complains about it. So verify runs twice: on the real file, where that complaint (and
only that one) is tolerated, and on a copy whose ExecStart binary is rewritten to /bin/true,
which must be entirely clean. The copy differs from the unit in that one path only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from watchd import bundled
from watchd.config import ApiConfig

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "watchd.service"
INSTALL_DOC = ROOT / "docs" / "install.md"
BINARY = "/opt/watchd/bin/watchd"
MAX_EXPOSURE = 1.5

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def directives() -> dict[str, list[str]]:
    """`Key=value` lines of the unit, every value of a repeated key kept in order."""
    found: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def one(key: str) -> str:
    values = directives().get(key, [])
    assert len(values) == 1, f"{key}= should appear once, found {values}"
    return values[0]


def analyze(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    # No colours, no pager, untranslated text: the output is parsed.
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C"}
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def complaints_about_watchd(result: subprocess.CompletedProcess[str]) -> list[str]:
    # verify exits 0 on an unknown key or an unparsable value (it only warns "ignoring"), so
    # the warnings themselves are what is checked, not just the exit status.
    # verify also loads the targets the unit refers to; a host's own broken units are not
    # this unit's problem, so only lines about watchd count.
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if "watchd" in line]


# --- what the service needs of the unit ---------------------------------------------------


def test_unit_is_a_notify_service_that_only_the_main_process_may_notify() -> None:
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert int(one("WatchdogSec")) == 30


def test_unit_runs_the_daemon_with_the_documented_config_path() -> None:
    assert one("ExecStart") == f"{BINARY} run --config /etc/watchd/watchd.yaml"
    doc = INSTALL_DOC.read_text()
    assert BINARY in doc
    assert "/etc/watchd/watchd.yaml" in doc


def test_reload_sends_sighup_to_the_main_process() -> None:
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"


def test_restarts_on_failure_only() -> None:
    assert one("Restart") == "on-failure"
    assert one("RestartSec")


def test_a_stop_outlasts_a_held_sync_create() -> None:
    """On SIGTERM in sync mode the daemon awaits creates held up to api.task_timeout: a
    create cut off by SIGKILL would be paid again after the restart."""
    assert int(one("TimeoutStopSec")) >= ApiConfig().task_timeout + 30


def test_runs_as_a_fixed_user_not_a_dynamic_one() -> None:
    """Inboxes are shared with people: the files watchd writes need a stable owner."""
    assert one("User") == "watchd"
    assert one("Group") == "watchd"
    assert "DynamicUser" not in directives()
    assert one("UMask") == "0002"


def test_state_directory_and_api_key_credential() -> None:
    assert one("StateDirectory") == "watchd"
    assert one("LoadCredential") == "api-key:/etc/watchd/api-key"


def test_filesystem_is_read_only_except_the_folders() -> None:
    assert one("ProtectSystem") == "strict"
    assert one("ReadWritePaths") == "/srv/watchd"


def test_sockets_are_limited_to_what_https_and_sd_notify_need() -> None:
    assert one("RestrictAddressFamilies").split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert "IPAddressDeny" not in directives()  # the API's addresses are not known in advance
    assert one("CapabilityBoundingSet") == ""
    assert directives()["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


# --- systemd's own tools ------------------------------------------------------------------


@needs_analyze
def test_verify_finds_nothing_but_the_binary_missing_on_this_machine(tmp_path: Path) -> None:
    result = analyze("verify", str(UNIT), cwd=tmp_path)
    if Path(BINARY).exists():
        assert result.returncode == 0, result.stderr
    unexpected = [line for line in complaints_about_watchd(result) if BINARY not in line]
    assert unexpected == []


@needs_analyze
def test_verify_is_clean_when_the_binary_exists(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert text.count(f"ExecStart={BINARY} ") == 1
    copy = tmp_path / "watchd.service"
    copy.write_text(text.replace(f"ExecStart={BINARY} ", "ExecStart=/bin/true "))
    result = analyze("verify", str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert complaints_about_watchd(result) == []


@needs_analyze
def test_the_unit_watchd_prints_for_this_install_verifies_clean(tmp_path: Path) -> None:
    copy = tmp_path / "watchd.service"
    copy.write_text(bundled.systemd_unit(bundled.this_watchd()))
    result = analyze("verify", str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert complaints_about_watchd(result) == []


EXPOSURE = re.compile(r"Overall exposure level for \S+:\s*(\d+(?:\.\d+)?)")


def parse_exposure(output: str) -> float:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)  # in case colours slip through
    found = EXPOSURE.findall(plain)
    assert len(found) == 1, f"no single exposure line in:\n{output}"
    return float(found[0])


def test_exposure_parser_reads_the_summary_line() -> None:
    sample = (
        "✗ UMask=   Files created by service are world-readable by default   0.1\n"
        "\n→ Overall exposure level for watchd.service: 1.1 OK 🙂\n"
    )
    assert parse_exposure(sample) == 1.1
    coloured = "\x1b[1m-> Overall exposure level for a.service: 9.6 UNSAFE\x1b[0m"
    assert parse_exposure(coloured) == 9.6


@needs_analyze
def test_sandbox_exposure_is_at_most_one_and_a_half(tmp_path: Path) -> None:
    result = analyze("security", "--offline=true", str(UNIT), cwd=tmp_path)
    if "--offline" in result.stderr and result.returncode != 0:
        pytest.skip(f"systemd-analyze too old for --offline: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert parse_exposure(result.stdout) <= MAX_EXPOSURE
