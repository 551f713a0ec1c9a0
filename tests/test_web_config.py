"""The `http:` section: defaults, every mistake reported like the rest of the config, and
`watchd check` refusing a dashboard open to the network without a token."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e import folder_paths, run_cli
from watchd.config import ConfigError, describe, load_config
from watchd.web.config import HttpConfig, is_loopback, parse_listen

TOKEN = "tok-" + "x" * 28


def cfg_file(root: Path, http: object = None) -> Path:
    data: dict = {
        "state_dir": str(root / "state"),
        "folders": [{"name": "f", **folder_paths(root, "f")}],
    }
    if http is not None:
        data["http"] = http
    path = root / "watchd.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems(root: Path, http: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(cfg_file(root, http))
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


def test_the_default_listens_on_loopback_8750(tmp_path) -> None:
    cfg = load_config(cfg_file(tmp_path))
    assert cfg.http == HttpConfig()
    assert cfg.http.listen == "127.0.0.1:8750" and cfg.http.url() == "http://127.0.0.1:8750/"
    assert describe(cfg)["http"]["listen"] == "127.0.0.1:8750"


def test_null_turns_the_dashboard_off(tmp_path) -> None:
    cfg = load_config(cfg_file(tmp_path, {"listen": None}))
    assert cfg.http.listen is None and cfg.http.url() is None


@pytest.mark.parametrize(
    ("http", "says"),
    [
        ({"listen": "0.0.0.0:8750"}, "http: listen 0.0.0.0:8750 is reachable from other machines"),
        ({"listen": "[::]:8750"}, "reachable from other machines: set http.token_file"),
        ({"listen": "watchd.lan:80"}, "reachable from other machines"),
        ({"listen": "8750"}, 'http.listen: must be "HOST:PORT"'),
        ({"listen": "localhost:99999"}, "http.listen: port must be 0..65535"),
        ({"listen": "[1:2:3]:80"}, "is not an IPv6 address"),
        ({"listen": "bad host:80"}, 'must be "HOST:PORT"'),
        ({"listen": 8750}, 'http.listen: must be "HOST:PORT"'),
        ({"token_file": "missing"}, "http.token_file: token file"),
        ({"allowed_hosts": "box.lan"}, "http.allowed_hosts: must be a list"),
        ({"allowed_hosts": ["10.0.0.1"]}, "IP addresses are always allowed"),
        ({"thumbnail_cache_mb": 0}, "http.thumbnail_cache_mb: must be a whole number"),
        ({"thumbnail_cache_mb": True}, "http.thumbnail_cache_mb: must be a whole number"),
        ({"lisen": "127.0.0.1:1"}, "http.lisen: unknown key 'lisen' (did you mean 'listen'?)"),
        ("on", "http: must be a map of settings"),
    ],
)
def test_mistakes_are_reported_with_their_key_path(tmp_path, http, says) -> None:
    found = problems(tmp_path, http)
    assert any(says in p for p in found), found


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("short\n", "at least 16 characters"),
        ("two words but long enough\n", "no spaces"),
        ("", "at least 16 characters"),
        (b"\xff\xfe" * 20, "not UTF-8"),
        ("x" * 5000, "too long"),
    ],
)
def test_a_token_file_must_hold_one_real_token(tmp_path, content, says) -> None:
    token = tmp_path / "token"
    token.write_bytes(content if isinstance(content, bytes) else content.encode())
    found = problems(tmp_path, {"listen": "0.0.0.0:8750", "token_file": "token"})
    assert any(says in p for p in found), found
    assert not any("x" * 20 in p for p in found)  # never the content


def test_a_token_opens_the_network_and_relative_paths_follow_the_config(tmp_path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    cfg = load_config(cfg_file(tmp_path, {"listen": "0.0.0.0:8750", "token_file": "token"}))
    assert cfg.http.token_file == tmp_path / "token"
    assert cfg.http.url() == "http://127.0.0.1:8750/"
    assert TOKEN not in str(describe(cfg))


def test_check_refuses_a_network_dashboard_without_a_token_and_shows_the_section(tmp_path) -> None:
    refused = run_cli("check", "-c", str(cfg_file(tmp_path, {"listen": "0.0.0.0:8750"})))
    shown = run_cli("check", "-c", str(cfg_file(tmp_path, {"listen": "127.0.0.1:9999"})))
    assert refused.returncode == 1
    assert "http: listen 0.0.0.0:8750 is reachable from other machines" in refused.stderr
    assert shown.returncode == 0 and "http:\n  listen: 127.0.0.1:9999" in shown.stdout


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:8750", "127.0.0.1", 8750, True),
        ("127.5.5.5:1", "127.5.5.5", 1, True),
        ("[::1]:8750", "::1", 8750, True),
        ("localhost:0", "localhost", 0, True),
        ("0.0.0.0:80", "0.0.0.0", 80, False),
        ("192.168.0.2:8750", "192.168.0.2", 8750, False),
        ("box.lan:8750", "box.lan", 8750, False),
    ],
)
def test_listen_addresses(text, host, port, loopback) -> None:
    assert parse_listen(text) == (host, port)
    assert is_loopback(host) is loopback
