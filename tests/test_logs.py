"""Logging set-up: names that are not UTF-8 are logged escaped, never raised on."""

import io
import json
import os
from pathlib import Path

import pytest
import structlog

from watchd import logs

BAD = os.fsdecode(b"caf\xe9.jpg")  # a Latin-1 name, as Python sees it


@pytest.fixture
def strict_stream(tmp_path: Path):
    """A UTF-8 text file with strict errors: what a log file or a pipe opened by hand is."""
    saved = structlog.get_config()
    with open(tmp_path / "log", "w", encoding="utf-8", errors="strict") as fh:
        yield fh
    structlog.configure(**saved)


def lines(stream: io.TextIOBase) -> str:
    stream.flush()
    return Path(stream.name).read_text(encoding="utf-8")


def test_json_lines_escape_a_name_that_is_not_utf8(strict_stream):
    logs.configure("json", "info", stream=strict_stream)
    logs.get_logger(folder="f").info(
        "file failed", file=BAD, path=Path("/in", BAD), names=[BAD], detail={"from": BAD}
    )
    event = json.loads(lines(strict_stream))
    assert event["file"] == "caf\\xe9.jpg"
    assert event["path"] == "/in/caf\\xe9.jpg"
    assert event["names"] == ["caf\\xe9.jpg"]
    assert event["detail"] == {"from": "caf\\xe9.jpg"}


def test_console_lines_escape_a_name_that_is_not_utf8(strict_stream):
    logs.configure("console", "info", stream=strict_stream)
    logs.get_logger().warning(f"cannot read {BAD}", file=BAD)
    text = lines(strict_stream)
    assert "cannot read caf\\xe9.jpg" in text and "file=caf\\xe9.jpg" in text


def test_a_traceback_holding_such_a_name_is_logged_too(strict_stream):
    logs.configure("json", "info", stream=strict_stream)
    try:
        raise ValueError(f"cannot move {BAD}")
    except ValueError:
        logs.get_logger().exception("move failed")
    event = json.loads(lines(strict_stream))
    assert "ValueError: cannot move caf\\xe9.jpg" in event["exception"]


def test_real_text_is_logged_as_it_is(strict_stream):
    logs.configure("json", "info", stream=strict_stream)
    logs.get_logger().info("ok", file="été 😀.jpg")
    assert json.loads(lines(strict_stream))["file"] == "été 😀.jpg"
