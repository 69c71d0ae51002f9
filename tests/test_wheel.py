"""A wheel built from a clean clone of this commit installs into a fresh virtualenv and runs headless from another
folder: the shaders and presets travel inside the package, nothing is read from the source tree."""

import os
import shlex
import site
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import imageio_ffmpeg

from installation.live.status import read_status
from installation.models import create_stylegan1, save_gan

ROOT = Path(__file__).resolve().parents[1]


def run(*command, cwd=None, env=None, timeout=300):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout}\n{result.stderr}"
    return result


def test_a_wheel_from_a_clean_clone_runs_headless_from_another_folder(tmp_path):
    clone = tmp_path / "clone"
    run("git", "clone", "--quiet", ROOT, clone)
    commit = run("git", "-C", ROOT, "rev-parse", "HEAD").stdout.strip()
    run("git", "-C", clone, "checkout", "--quiet", "--detach", commit)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
        "--wheel-dir", tmp_path / "dist", clone)
    (wheel,) = (tmp_path / "dist").glob("uncanny-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    # torch & co. from the environment running the tests (the system's or a virtualenv's: `--system-site-packages`
    # would reach only the base interpreter's), after the venv's own packages. Folders named in a .pth file are not
    # scanned for .pth files of their own, so the checkout's editable install there stays out.
    packages = run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout
    outer = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(packages.strip()) / "outer.pth").write_text("".join(f"{folder}\n" for folder in outer))
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), elsewhere / "tiny.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the checkout must not be importable
    where = run(venv / "bin" / "python", "-c", "import installation.presets as p, installation.resources as r; "
                "print(r.__file__); print(r.data_dir('shaders') / 'present.frag'); "
                "print(p.load_preset('gallery').source)", cwd=elsewhere, env=env).stdout
    assert all(line.startswith(str(venv)) for line in where.split()) and where.count("\n") == 3, where
    (elsewhere / "show.toml").write_text("[logs]\nstatus_every = 0.5\nthumbnail_minutes = 0.01\n")
    show = subprocess.Popen([venv / "bin" / "uncanny", "--checkpoint", "tiny.pt", "--preset", "show.toml",
                             "--headless", "--size", "96x64", "--run-dir", "run", "--device", "cpu", "--no-osc",
                             "--http-port", "0"],
                            cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # its engine up (the status is written from then on) and a thumbnail taken
    while not ((elsewhere / "run" / "status.json").exists() and list((elsewhere / "run").glob("thumbnails/*.jpg"))):
        assert show.poll() is None and time.monotonic() < deadline, show.communicate(timeout=60)[1]
        time.sleep(0.2)
    show.terminate()
    assert show.wait(90) == 0, show.communicate()[1]
    (video,) = (elsewhere / "run").glob("live-*.mp4")
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames > 0
    assert read_status(elsewhere / "run").model == "tiny.pt"
    assert (elsewhere / "run" / "logs" / "uncanny.log").stat().st_size > 0
    assert list((elsewhere / "run" / "thumbnails").glob("*-it*.jpg"))
    status = subprocess.run([venv / "bin" / "uncanny", "service", "status", "--run-dir", "run"], cwd=elsewhere,
                            env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 2 and status.stdout.startswith("uncanny STOPPED: "), status  # it ran, and ended
    assert "run/status.json:" in status.stdout and "0 cycles completed" in status.stdout
    unit = run(venv / "bin" / "uncanny", "service", "install", "--user", "--print", "--checkpoint", "tiny.pt",
               cwd=elsewhere, env=env).stdout
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert shlex.split(exec_start[len("ExecStart="):])[:2] == [str(venv / "bin" / "python"),
                                                               str(venv / "bin" / "uncanny")]
