"""`service install` writes a systemd unit with every key the gallery needs (and one `systemd-analyze verify`
accepts where it is installed); `service status` prints the status file and says when it is stale."""

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from installation.cli import main
from installation.live.status import STATUS_FILE, write_status
from installation.service.unit import UnitSettings, run_dir_of, unit_text

ROOT = Path(__file__).resolve().parents[1]


def parse_unit(text):
    """{section: {key: [values]}} (a unit may repeat a key, Environment= here)."""
    sections, current = {}, None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


def install(tmp_path, *args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "service", "install", *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), **(env or {})})


def verify(unit_file, user):
    """systemd-analyze verify, where this machine has it: it exits 0 even on unknown keys and bad values (it fails
    only on errors such as a command that is not executable), so any output at all is a failure."""
    if shutil.which("systemd-analyze") is None:
        return
    with tempfile.TemporaryDirectory(prefix="rt-", dir="/tmp") as runtime:  # short: socket paths live under it
        result = subprocess.run(["systemd-analyze", *(["--user"] if user else []), "verify", str(unit_file)],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "XDG_RUNTIME_DIR": runtime})
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_user_unit_has_the_gallery_keys_and_tells_the_two_commands(tmp_path):
    result = install(tmp_path, "--user", "--run-dir", "show run", "--display", ":1", "--xauthority", "/x/.Xauth",
                     "--", "--osc-port", "9001")
    assert result.returncode == 0, result.stderr
    unit_file = tmp_path / "config" / "systemd" / "user" / "uncanny.service"
    assert f"wrote {unit_file}" in result.stdout
    assert "systemctl --user daemon-reload" in result.stdout
    assert "systemctl --user enable --now uncanny.service" in result.stdout
    unit = parse_unit(unit_file.read_text())
    service = unit["Service"]
    for key, value in {"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30", "Restart": "always",
                       "KillMode": "mixed", "TimeoutStopSec": "120", "RestartPreventExitStatus": "2",
                       "WorkingDirectory": str(tmp_path)}.items():
        assert service[key] == [value], key
    assert set(service["Environment"]) >= {"DISPLAY=:1", "XAUTHORITY=/x/.Xauth"}
    command = shlex.split(service["ExecStart"][0])
    run_dir = str(tmp_path / "show run")
    assert command == [sys.executable, str(ROOT / "run_installation.py"), "--preset", "gallery", "--run-dir",
                       run_dir, "--osc-port", "9001"]
    assert unit["Unit"]["After"] == ["graphical-session.target"] and unit["Unit"]["PartOf"] == \
        ["graphical-session.target"] and unit["Install"]["WantedBy"] == ["graphical-session.target"]
    verify(unit_file, user=True)
    # `service status` without --run-dir finds the folder through the installed unit
    status = subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "service", "status"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")})
    assert status.returncode == 3 and f"{run_dir}/{STATUS_FILE}: cannot be read" in status.stdout


def test_system_unit_runs_as_the_user_and_passes_verify(tmp_path, capsys, monkeypatch):
    (tmp_path / "show.toml").write_text("[display]\nhud = false\n")
    (tmp_path / "model 100%.pt").write_bytes(b"")  # only its name matters here
    monkeypatch.chdir(tmp_path)
    assert main(["service", "install", "--print", "--preset", "show.toml", "--checkpoint", "model 100%.pt"]) == 0
    text = capsys.readouterr().out
    unit = parse_unit(text)
    assert unit["Service"]["User"] and unit["Service"]["RemoveIPC"] == ["yes"]
    assert unit["Install"]["WantedBy"] == ["graphical.target"]
    command = shlex.split(unit["Service"]["ExecStart"][0].replace("%%", "%"))
    assert command[command.index("--preset") + 1] == str(tmp_path / "show.toml")
    assert command[command.index("--checkpoint") + 1] == str(tmp_path / "model 100%.pt")
    assert command[command.index("--run-dir") + 1] == str(tmp_path / "runs" / "model 100%")
    (tmp_path / "uncanny.service").write_text(text)
    verify(tmp_path / "uncanny.service", user=False)


@pytest.mark.parametrize("shell, guessed", [
    ({"DISPLAY": ":1"}, None),  # the gallery session's own terminal: nothing to warn about
    ({}, "DISPLAY :0 (this shell has none) and XAUTHORITY (none) (this shell's) are guesses"),
    ({"DISPLAY": "localhost:10.0", "SSH_CONNECTION": "10.0.0.2 5000 10.0.0.1 22"},
     "DISPLAY :0 (this shell has localhost:10.0) and XAUTHORITY (none) (this shell's, over ssh) are guesses"),
    ({"DISPLAY": ":0", "XAUTHORITY": "/home/g/.Xauthority", "SSH_CONNECTION": "10.0.0.2 5000 10.0.0.1 22"},
     "XAUTHORITY /home/g/.Xauthority (this shell's, over ssh) is a guess"),
])
def test_install_warns_when_the_session_it_writes_is_a_guess(tmp_path, shell, guessed):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "XAUTHORITY", "SSH_CONNECTION")}
    result = subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "service", "install", "--user",
                             "--print"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={**env, **shell})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == ([] if guessed is None else [warnings[0]]) and (guessed is None or guessed in warnings[0])
    environment = parse_unit(result.stdout)["Service"]["Environment"]
    assert f"DISPLAY={shell.get('DISPLAY') if shell.get('DISPLAY', '').startswith(':') else ':0'}" in environment
    explicit = subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "service", "install", "--user",
                               "--print", "--display", ":2", "--xauthority", ""], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path, env={**env, **shell})
    assert explicit.returncode == 0 and "warning" not in explicit.stderr, explicit.stderr


def test_relaunches_never_give_up_and_back_off_where_systemd_can(tmp_path):
    settings = UnitSettings(command=(sys.executable, "run_installation.py"), working_dir=tmp_path, run_dir=tmp_path)
    old, new = (parse_unit(unit_text(dataclasses.replace(settings, systemd_version=v)))["Service"] for v in (252, 256))
    for service in (old, new):  # 75 (try again) is relaunched like a crash; only 2 (bad input) is not
        assert service["Restart"] == ["always"] and service["RestartPreventExitStatus"] == ["2"]
    assert "RestartSteps" not in old and "RestartMaxDelaySec" not in old  # systemd 252 would warn about them
    assert new["RestartSec"] == ["5"] and new["RestartSteps"] == ["5"] and new["RestartMaxDelaySec"] == ["120"]
    assert parse_unit(unit_text(settings))["Unit"]["StartLimitIntervalSec"] == ["0"]


def test_a_path_with_specifiers_and_quotes_round_trips_through_the_unit(tmp_path):
    run_dir = tmp_path / "it's $HOME at 100%"
    settings = UnitSettings(command=(sys.executable, "run_installation.py", "--run-dir", str(run_dir)),
                            working_dir=tmp_path, run_dir=run_dir)
    assert run_dir_of(unit_text(settings)) == run_dir
    with pytest.raises(ValueError, match="a line break cannot go into a systemd unit"):
        unit_text(dataclasses.replace(settings, working_dir=tmp_path / "two\nlines"))


@pytest.mark.parametrize("args, message", [
    (["--preset", "nightclub"], "preset 'nightclub' not found"),
    (["--checkpoint", "missing.pt"], "missing.pt: no such file"),
    (["--", "loop", "--seconds", "1", "--out", "x.mp4"], "name a command; give installation options only"),
])
def test_install_refuses_bad_input_in_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    assert main(["service", "install", "--user", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "config").exists()


@pytest.mark.parametrize("flag, value, message", [("--watchdog", "2", "expected a whole number from 5 to 3600"),
                                                   ("--stop-timeout", "0", "--stop-timeout")])
def test_install_refuses_bad_unit_timings(tmp_path, capsys, monkeypatch, flag, value, message):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:
        main(["service", "install", "--user", flag, value])
    assert refused.value.code == 2 and f"argument {flag}:" in (err := capsys.readouterr().err) and message in err
    assert not (tmp_path / "config").exists()


def test_install_checks_the_installation_options_it_writes_into_the_unit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal, as the service would meet it
        main(["service", "install", "--user", "--", "--size", "10x10"])
    assert refused.value.code == 2 and "argument --size: size must be WIDTHxHEIGHT" in capsys.readouterr().err
    assert not (tmp_path / "config").exists()


def _status(**changes):
    from installation.live.status import LiveStatus

    values = dict(iteration=4321, cycle=3, phase="holding", fps=29.7, uptime=2 * 86400 + 3 * 3600, last_error="",
                  engine_status="running", engine_restarts=1, steps_per_second=2.5, collapsed=True,
                  disk_free=5 * 2**30, recording="", model="face.pt", run_dir="/r", every=5.0)
    return LiveStatus(**{**values, **changes})


def status_of(run_dir, *extra, env=None) -> subprocess.CompletedProcess:
    """`service status` as a monitor runs it: its own process, its exit code and output."""
    return subprocess.run([sys.executable, str(ROOT / "run_installation.py"), "service", "status", *extra,
                           *(["--run-dir", str(run_dir)] if run_dir else [])], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def age_status(run_dir, seconds: float) -> None:
    data = json.loads((run_dir / STATUS_FILE).read_text())
    data["updated"] -= seconds
    (run_dir / STATUS_FILE).write_text(json.dumps(data))


def test_status_says_running_readably_with_a_plugin_line_and_exits_0(tmp_path):
    write_status(tmp_path, _status(every=600.0))  # fresh for half an hour, however slowly the command starts
    running = status_of(tmp_path)
    assert running.returncode == 0, running.stderr
    first, *rest = running.stdout.splitlines()
    assert re.fullmatch(r"uncanny RUNNING: iteration 4321, 29\.7 fps, 2\.50 steps/s, up 2 d 3 h \| iteration=4321 "
                        r"fps=29\.7 steps_per_second=2\.50 engine_restarts=1c disk_free=5368709120B age=\d+s", first)
    for text in ("holding, 3 cycles completed", "4321 (engine running, 2.50 steps/s, COLLAPSED)", "2 d 3 h",
                 "1 engine restarts", "5.0 GB", "recording   no", "thumbnails  none yet", "logs/uncanny.log"):
        assert text in "\n".join(rest), text
    as_json = status_of(tmp_path, "--json")
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 0 and (data["state"], data["code"], data["iteration"]) == ("RUNNING", 0, 4321)


@pytest.mark.parametrize("case, state, code, words", [
    ("engine crashed", "ENGINE DOWN", 1, "the picture is up but the engine is crashed: engine died"),
    ("stale", "STALE", 2, "not rewritten for 1 min, more than 3 times its interval; process {gone} is not running"),
    ("stopped", "STOPPED", 2, "the installation ended 1 h ago, not hung, and is not running"),
    ("never ran", "UNKNOWN", 3, "status.json: cannot be read (no status.json in "),
    ("not a status", "UNKNOWN", 3, "status.json: not a status file"),
])
def test_status_exit_codes_follow_the_monitoring_plugin_convention(tmp_path, case, state, code, words):
    """0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: what Nagios, Icinga and their kin expect of a check command."""
    if case == "engine crashed":
        write_status(tmp_path, _status(engine_status="crashed", last_error="engine died", every=600.0))
    elif case in ("stale", "stopped"):
        write_status(tmp_path, _status(phase="stopped" if case == "stopped" else "holding"))
        age_status(tmp_path, 3600 if case == "stopped" else 60)
        if case == "stale":  # written by a process that is gone
            gone = subprocess.Popen(["true"])
            gone.wait()
            data = json.loads((tmp_path / STATUS_FILE).read_text())
            (tmp_path / STATUS_FILE).write_text(json.dumps({**data, "pid": gone.pid}))
            words = words.format(gone=gone.pid)
    elif case == "not a status":
        (tmp_path / STATUS_FILE).write_text("[]")
    checked = status_of(tmp_path)
    assert checked.returncode == code, checked
    assert checked.stdout.startswith(f"uncanny {state}: ") and words in checked.stdout.splitlines()[0], checked.stdout
    as_json = status_of(tmp_path, "--json")
    assert as_json.returncode == code and json.loads(as_json.stdout)["state"] == state


def test_status_with_no_installed_unit_and_no_run_dir_is_unknown(tmp_path):
    checked = status_of(None, env={"XDG_CONFIG_HOME": str(tmp_path / "config")})
    assert checked.returncode == 3 and "no installed uncanny.service" in checked.stdout, checked


def test_status_finds_the_fallback_the_installation_wrote_while_its_run_folder_failed(tmp_path, capsys,
                                                                                      monkeypatch):
    from installation.live.status import fallback_folders

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    write_status(tmp_path, _status(iteration=10))
    data = json.loads((tmp_path / STATUS_FILE).read_text())
    data["updated"] -= 60  # the run folder's own, last written a minute ago ...
    (tmp_path / STATUS_FILE).write_text(json.dumps(data))
    fallback = fallback_folders(tmp_path)[0]
    fallback.mkdir(parents=True)
    problem = f"the disk of {tmp_path} is read-only: training goes on, unsaved"
    write_status(fallback, _status(iteration=20, storage=problem))  # ... and the fallback since
    with pytest.raises(SystemExit) as ended:  # not stale (it is being written), but a warning: plugin code 1
        main(["service", "status", "--run-dir", str(tmp_path)])
    assert ended.value.code == 1
    out = capsys.readouterr().out
    assert out.startswith(f"uncanny STORAGE: the show goes on, but the run folder cannot be written: {problem}")
    assert f"{fallback / STATUS_FILE}:" in out and "iteration   20 " in out
    assert f"storage     {problem}" in out
    assert "run folder  writable, " in out and " free (now)" in out  # looked at as the command runs
