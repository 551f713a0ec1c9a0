"""The `watchd` command line as an operator meets it, without a daemon running.

Most cases call the real entry point (`watchd.cli.main`, what `watchd` and `python -m watchd`
run) in-process with stdout and stderr captured apart, so exit codes, error lines and JSON
are the real ones at a fraction of a subprocess's cost; the cases about secrets and the
one-shot `process` run `python -m watchd` in a subprocess. The docs test at the end reads the
click command tree, in the style of sqlite-utils' test_docs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import structlog
import yaml

from tests.e2e import drop, files, folder_paths
from watchd.cli import cli, main
from watchd.ledger import Ledger
from watchd.lifecycle import State
from watchd.sim import SimConfig, Simulator

ROOT = Path(__file__).resolve().parent.parent
FILE_KEY = "sk-FILEKEY-c0ffee4242beef"
ENV_KEY = "sk-ENVKEY-deadbead1357"
COMMANDS = sorted(cli.commands)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def _clean(result: Result) -> Result:
    # Whatever happened, the operator never sees a traceback or a key.
    assert "Traceback" not in result.stderr, result.stderr
    for secret in (FILE_KEY, ENV_KEY):
        assert secret not in result.stdout and secret not in result.stderr
    return result


@pytest.fixture
def watchd(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`watchd ARGS...` in-process through the real entry point: a Result."""
    monkeypatch.setenv("WATCHD_API_KEY", ENV_KEY)
    monkeypatch.delenv("WATCHD_CONFIG", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    saved = structlog.get_config()  # the CLI points structlog at the captured stderr

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return _clean(Result(code, captured.out, captured.err))

    yield invoke
    structlog.configure(**saved)


def watchd_process(*args: str, env: dict[str, str] | None = None) -> Result:
    """`python -m watchd ARGS...` in a subprocess."""
    environ = {**os.environ, "WATCHD_API_KEY": ENV_KEY, "COLUMNS": "200", **(env or {})}
    if "WATCHD_CONFIG" not in (env or {}):
        environ.pop("WATCHD_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "watchd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )
    return _clean(Result(done.returncode, done.stdout, done.stderr))


def one_clear_line(result: Result) -> str:
    assert result.returncode != 0, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def write(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def config(
    root: Path, base_url: str = "http://127.0.0.1:9", key_mode: int = 0o600, **api: Any
) -> Path:
    key = root / "api-key"
    key.write_text(FILE_KEY + "\n")
    key.chmod(key_mode)
    return write(
        root / "watchd.yaml",
        {
            "api": {"base_url": base_url, "key_file": str(key), "poll_interval": 0.2, **api},
            "state_dir": str(root / "state"),
            "log": {"format": "json"},
            "folders": [{"name": "products", **folder_paths(root, "products"), "settle": 0.2}],
        },
    )


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return config(tmp_path)


# -- watchd check (subprocesses: the real process must never print a key) -------------------


def test_check_refuses_an_outbox_that_is_a_symlink_to_its_own_inbox(tmp_path: Path) -> None:
    """Compared as text the two differ; on disk they are one folder, and every result would
    be taken as a new, paid input (one photo cost 17 creates in 20 s)."""
    path = config(tmp_path)
    data = yaml.safe_load(path.read_text())
    inbox = Path(data["folders"][0]["inbox"])
    inbox.mkdir(parents=True, exist_ok=True)
    link = tmp_path / "results-link"
    link.symlink_to(inbox)
    data["folders"][0]["outbox"] = str(link)
    write(path, data)

    result = watchd_process("check", "-c", str(path))

    assert result.returncode == 1
    assert "folders[0].outbox" in result.stderr and "through a symlink" in result.stderr


def test_check_lists_every_error_with_its_key_path_and_exits_non_zero(tmp_path: Path) -> None:
    path = config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["api"]["qps"] = -1
    data["folders"][0]["expnd"] = {"top": 0.2}
    write(path, data)

    result = watchd_process("check", "-c", str(path))

    assert "api.qps" in result.stderr
    assert "folders[0].expnd" in result.stderr
    assert "did you mean 'expand'" in result.stderr
    assert str(path) in result.stderr
    assert result.stdout == ""
    assert result.returncode != 0, result.stderr


def test_check_json_is_clean_json_and_the_key_only_appears_as_its_source(cfg: Path) -> None:
    result = watchd_process("check", "--json", "-c", str(cfg))

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [f["name"] for f in data["folders"]] == ["products"]
    assert str(cfg.parent / "api-key") in data["api"]["key"]
    assert "warning" not in result.stderr  # a 0600 key file is fine


def test_check_warns_about_a_key_file_others_may_read(tmp_path: Path) -> None:
    path = config(tmp_path, key_mode=0o644)

    result = watchd_process("check", "-c", str(path))

    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and str(tmp_path / "api-key") in result.stderr
    assert "chmod 600" in result.stderr
    assert "products" in result.stdout


def test_check_with_the_key_from_the_environment_never_prints_it(tmp_path: Path) -> None:
    path = config(tmp_path)
    data = yaml.safe_load(path.read_text())
    del data["api"]["key_file"]
    write(path, data)

    result = watchd_process("check", "--json", "-c", str(path))  # _clean: no key anywhere

    assert result.returncode == 0, result.stderr
    assert "WATCHD_API_KEY" in json.loads(result.stdout)["api"]["key"]


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("pasted", ["wxAbCdEfGhIjKlMnOpQrStUvWxYz", "wx1234abcd5678efgh9012"])
def test_a_key_pasted_into_key_file_is_refused_and_never_echoed(
    tmp_path: Path, command: str, pasted: str
) -> None:
    """Letters only or with digits: the error names the key path and what to do, not the value."""
    path = config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["api"]["key_file"] = pasted
    write(path, data)

    result = watchd_process(command, "-c", str(path))

    assert result.returncode == 1
    assert pasted not in result.stdout + result.stderr
    assert "api.key_file: looks like the API key itself" in result.stderr


# -- --config before or after the command, $WATCHD_CONFIG ------------------------------------


def test_config_option_works_before_or_after_the_command_name(
    cfg: Path, watchd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    after = watchd("status", "--json", "-c", str(cfg))
    before = watchd("-c", str(cfg), "status", "--json")
    long_form = watchd("--config", str(cfg), "status", "--json")
    monkeypatch.setenv("WATCHD_CONFIG", str(cfg))
    from_env = watchd("status", "--json")

    for result in (after, before, long_form, from_env):
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["state_dir"] == str(cfg.parent / "state")


def test_python_dash_m_watchd_is_the_same_entry_point(cfg: Path) -> None:
    result = watchd_process("-c", str(cfg), "status", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["daemon"]["running"] is False


# -- status and jobs without a daemon --------------------------------------------------------


def test_status_json_when_no_daemon_has_ever_run(cfg: Path, watchd: Any) -> None:
    result = watchd("status", "--json", "-c", str(cfg))

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["daemon"] == {"running": False, "pid": None}
    assert data["folders"] == {"products": {}}
    assert data["recent_failures"] == []
    assert data["last_hour"]["tasks_done"] == 0


def test_status_table_at_80_columns_names_the_daemon_and_every_folder(cfg: Path) -> None:
    # 80 columns: a classic terminal, and what rich assumes when stdout is a pipe or a file.
    result = watchd_process("status", "-c", str(cfg), env={"COLUMNS": "80"})

    assert result.returncode == 0, result.stderr
    assert "not running" in result.stdout
    assert "products" in result.stdout, result.stdout


def test_jobs_json_with_no_ledger_prints_nothing(cfg: Path, watchd: Any) -> None:
    result = watchd("jobs", "--json", "-c", str(cfg))

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


# -- every command: mistakes are one clear line and a non-zero exit ---------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_flag_is_one_line_and_exit_2(command: str, watchd: Any) -> None:
    result = watchd(command, "--no-such-flag")

    line = one_clear_line(result)
    assert result.returncode == 2
    assert "--no-such-flag" in line
    assert f"watchd {command} --help" in line


def test_an_unknown_command_is_one_line(watchd: Any) -> None:
    line = one_clear_line(watchd("frobnicate"))
    assert "frobnicate" in line


CONFIG_COMMANDS = [
    ["run"],
    ["check"],
    ["check", "--json"],
    ["status"],
    ["status", "--json"],
    ["jobs", "--json"],
    ["retry", "1"],
    ["process", "x.png", "--folder", "products"],
]


@pytest.mark.parametrize("args", CONFIG_COMMANDS, ids=lambda a: " ".join(a))
def test_a_missing_config_is_one_line_and_a_non_zero_exit(
    tmp_path: Path, watchd: Any, args: list[str]
) -> None:
    missing = tmp_path / "nope.yaml"

    result = watchd(*args, "-c", str(missing))

    assert result.stdout == ""
    line = one_clear_line(result)
    assert str(missing) in line and "not found" in line


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "--folder", "nope"],
        ["retry", "--failed", "--folder", "nope"],
        ["process", "PHOTO", "--folder", "nope"],
    ],
    ids=lambda a: a[0],
)
def test_an_unknown_folder_is_one_line(
    tmp_path: Path, cfg: Path, watchd: Any, args: list[str]
) -> None:
    photo = tmp_path / "photo.png"
    drop(photo)
    args = [str(photo) if a == "PHOTO" else a for a in args]

    line = one_clear_line(watchd(*args, "-c", str(cfg)))

    assert "folder 'nope'" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["jobs", "--state", "sideways"], ["sideways", "failed"]),
        (["jobs", "--since", "yesterday"], ["--since", "yesterday"]),
        (["retry"], ["--failed"]),
        (["retry", "abc"], ["abc"]),
        (["process", "missing.png", "--folder", "products"], ["missing.png"]),
        (["process", "x.png"], ["--folder"]),
    ],
    ids=["state", "since", "retry-nothing", "retry-not-a-number", "no-such-file", "no-folder"],
)
def test_a_bad_argument_is_one_line(
    cfg: Path, watchd: Any, args: list[str], words: list[str]
) -> None:
    line = one_clear_line(watchd(*args, "-c", str(cfg)))
    for word in words:
        assert word in line


def test_retry_before_anything_ran_is_one_line(cfg: Path, watchd: Any) -> None:
    line = one_clear_line(watchd("retry", "3", "-c", str(cfg)))
    assert "nothing has run yet" in line


def test_retry_of_an_unknown_job_id_is_one_line(cfg: Path, watchd: Any) -> None:
    Ledger.open(cfg.parent / "state" / "watchd.db").close()

    line = one_clear_line(watchd("retry", "424242", "-c", str(cfg)))

    assert "424242" in line


def test_retry_failed_goes_on_past_a_job_whose_original_is_gone(cfg: Path, watchd: Any) -> None:
    """`retry --failed` tries every failed job and sums up; one missing original does not
    stop the others."""
    from watchd.lifecycle import Event

    ledger = Ledger.open(cfg.parent / "state" / "watchd.db")
    failed_dir = cfg.parent / "products" / "failed"
    failed_dir.mkdir(parents=True, exist_ok=True)
    ids = []
    for name in ("gone.png", "here.png"):
        fields = {"folder": "products", "key": f"products:{name}:", "name": name}
        job = ledger.add_job({**fields, "path": str(failed_dir / name)}, state=State.FAILING)
        ledger.commit(job, Event.MOVED)
        ids.append(job)
    ledger.close()
    drop(failed_dir / "here.png", seed=3)  # gone.png's original is not there any more

    result = watchd("retry", "--failed", "-c", str(cfg))

    assert result.returncode != 0
    assert f"job {ids[0]}: not retried" in result.stderr
    assert f"job {ids[1]}: original back in the inbox" in result.stdout
    assert "1 of 2 jobs retried" in result.stderr
    assert (cfg.parent / "products" / "inbox" / "here.png").exists()


def test_a_damaged_ledger_is_one_line_that_says_what_to_do(cfg: Path, watchd: Any) -> None:
    db = cfg.parent / "state" / "watchd.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"not a ledger at all" * 200)

    line = one_clear_line(watchd("status", "-c", str(cfg)))

    assert str(db) in line and "move the file" in line


# -- watchd process (no daemon) ---------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(qps=50, processing_time=(0.1, 0.2), seed=9)).start() as s:
        yield s


def test_process_keeps_to_the_spending_cap_and_ends(tmp_path: Path, sim: Simulator) -> None:
    """A one-shot run spends the same account: at the cap it sends nothing more, says why,
    and ends instead of waiting for midnight."""
    path = config(tmp_path, base_url=sim.base_url, max_creates_per_day=1, timezone="UTC")
    shots = tmp_path / "shots"
    drop(shots / "one.png", seed=1)
    drop(shots / "two.png", seed=2)

    capped = watchd_process(
        "process", str(shots / "one.png"), str(shots / "two.png"), "--folder", "products",
        "-c", str(path),
    )  # fmt: skip

    assert capped.returncode == 1, capped.stderr
    assert sim.stats["tasks_created"] == 1
    assert "api.max_creates_per_day reached" in capped.stdout, capped.stdout
    assert len(files(tmp_path / "products/outbox")) == 1


def test_process_writes_results_leaves_the_files_and_fails_on_a_bad_one(
    tmp_path: Path, sim: Simulator
) -> None:
    path = config(tmp_path, base_url=sim.base_url)
    shots = tmp_path / "shots"
    drop(shots / "one.png", seed=1)
    (shots / "bad.png").write_text("a text file wearing a .png name\n")
    outbox = tmp_path / "products/outbox"

    mixed = watchd_process(
        "process",
        str(shots / "one.png"),
        str(shots / "bad.png"),
        "--folder",
        "products",
        "-c",
        str(path),
    )

    assert mixed.returncode == 1, mixed.stderr
    row = next(line for line in mixed.stdout.splitlines() if "bad.png" in line)
    assert "failed" in row and "not a JPEG or PNG image" in row, mixed.stdout
    row = next(line for line in mixed.stdout.splitlines() if "one.png" in line)
    assert "done" in row and str(outbox / "one.png") in row, mixed.stdout
    assert files(outbox) == ["one.png"]
    assert files(shots) == ["bad.png", "one.png"]  # the files stay where they are
    assert files(tmp_path / "products/inbox") == []
    assert files(tmp_path / "products/failed") == []

    drop(shots / "two.jpg", seed=2)
    good = watchd_process(
        "process", str(shots / "two.jpg"), "--folder", "products", "-c", str(path)
    )

    assert good.returncode == 0, good.stderr
    assert files(outbox) == ["one.png", "two.jpg"]
    assert (shots / "two.jpg").exists()
    assert len(sim.uploads) == 2  # the bad file never reached the API

    listed = watchd_process("jobs", "--json", "-c", str(path))
    views = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted((v["file"], v["state"]) for v in views) == [
        ("bad.png", "failed"),
        ("one.png", "done"),
        ("two.jpg", "done"),
    ]
    for line in mixed.stderr.splitlines():  # logs are JSON lines on stderr, never stdout
        if line.startswith("{"):
            json.loads(line)


# -- docs: every command has help with an example, and the README names it ----------------


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_text_and_an_example(name: str) -> None:
    command = cli.commands[name]
    text = command.help or ""
    assert text.strip(), f"watchd {name} has no help text"
    assert "Example:" in text, f"watchd {name}'s help has no Example:"
    example = text.split("Example:", 1)[1]
    assert f"watchd {name}" in example, f"watchd {name}'s example does not use it"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"watchd {name} {param.opts[0]} has no help"


def test_the_group_help_has_an_example() -> None:
    assert "Example:" in (cli.help or "")


@pytest.mark.parametrize("name", COMMANDS)
def test_readme_mentions_every_command(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"`watchd {re.escape(name)}\b", readme), f"README lacks `watchd {name}`"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_prints_the_example(name: str, watchd: Any) -> None:
    result = watchd(name, "--help")

    assert result.returncode == 0
    assert "Example:" in result.stdout and f"watchd {name}" in result.stdout


def test_status_and_jobs_never_write_the_ledger(cfg: Path, watchd: Any) -> None:
    """The views open the ledger read-only: a file nobody may write is still readable."""
    db = cfg.parent / "state" / "watchd.db"
    Ledger.open(db).close()
    before = db.read_bytes()
    stamp = db.stat().st_mtime_ns
    assert watchd("status", "--json", "-c", str(cfg)).returncode == 0
    assert watchd("jobs", "--json", "-c", str(cfg)).returncode == 0
    assert db.read_bytes() == before and db.stat().st_mtime_ns == stamp
