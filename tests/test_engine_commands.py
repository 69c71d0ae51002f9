"""Command parsing and engine settings validation (no model needed)."""

import pytest
import torch

from installation.engine import (COMMANDS, Command, CommandError, ConfigError, EngineConfig, parse_command,
                                resolve_device)
from installation.engine.commands import SETTINGS, command_id, command_name
from installation.engine.config import DeviceUnavailable, NoDeviceNow, NoSuchDevice, check_device_present, \
    describe_device, engine_threads


def test_every_command_form_reads_the_same():
    expected = Command("lr", 0.0005)
    for raw in ("lr 0.0005", "  lr   5e-4 ", {"name": "lr", "value": "0.0005"}, ("lr", 0.0005), ["lr", "5e-4"],
                Command("lr", 0.0005)):
        assert parse_command(raw) == expected
    assert parse_command("pause") == Command("pause")
    assert parse_command("rewind 300") == Command("rewind", 300)
    assert parse_command("batch 8") == Command("batch", 8)
    assert parse_command("limit 0") == Command("limit", 0.0)
    assert parse_command("lr 0") == Command("lr", 0.0)  # the model's own rate
    assert parse_command("loss log") == Command("loss", "log")
    assert parse_command("fault") == Command("fault", "weight")
    assert parse_command("journey_minutes 30") == Command("journey_minutes", 30.0)
    assert set(COMMANDS) == {"pause", "resume", "toggle_pause", "limit", "journey_minutes", "lr", "loss", "batch",
                             "rewind", "back", "reset", "snapshot", "shutdown", "fault", "render"}


def test_a_command_keeps_its_senders_id_and_names_itself_unparsed():
    assert parse_command(Command("lr", "5e-4", 17)) == Command("lr", 0.0005, 17)
    assert parse_command({"name": "back", "id": 9}) == Command("back", id=9)
    assert parse_command({"name": "back", "id": "9"}).id is None  # only an int is an id
    assert [command_id(raw) for raw in (Command("reset", id=3), {"name": "x", "id": 4}, "reset", ("lr", 1))] == \
        [3, 4, None, None]
    assert [command_name(raw) for raw in (Command("warp"), "lr 2", {"name": "loss"}, ("render", {}), "", 42)] == \
        ["warp", "lr", "loss", "render", None, None]
    assert SETTINGS <= set(COMMANDS) and not SETTINGS & {"reset", "back", "rewind", "snapshot", "pause", "shutdown"}


@pytest.mark.parametrize("raw, message", [
    ("jump 3", "unknown command 'jump'; known: pause, resume"),
    ("__import__('os')", "unknown command"),  # text is never evaluated
    ("rewind -5", "rewind iteration must be an integer >= 0, got -5"),
    ("rewind 2.5", "rewind: '2.5' is not an integer"),
    (("rewind", 2.5), "rewind iteration must be an integer >= 0, got 2.5"),
    (("batch", True), "batch must be an integer from 1 to 64, got True"),
    ("batch 0", "batch must be an integer from 1 to 64, got 0"),
    ("lr 1.5", "lr must be 0 (the model's own rate) or a number > 0 and <= 1, got 1.5"),
    ("lr inf", "lr must be 0 (the model's own rate) or a number > 0 and <= 1, got inf"),
    ("lr", "lr needs a value"),
    ("limit -1", "steps per second limit must be a finite number >= 0, got -1.0"),
    ("loss hinge", "loss must be one of logit, softplus, log, got 'hinge'"),
    ("journey_minutes -1", "journey_minutes must be a finite number >= 0 and <= 525600, got -1.0"),
    ("journey_minutes nan", "journey_minutes must be a finite number >= 0 and <= 525600, got nan"),
    ("journey_minutes 1e6", "journey_minutes must be a finite number >= 0 and <= 525600, got 1000000.0"),
    ("journey_minutes soon", "journey_minutes: 'soon' is not a number"),
    (("journey_minutes", True), "journey_minutes must be a finite number >= 0 and <= 525600, got True"),
    ("journey_minutes", "journey_minutes needs a value"),
    ("fault disk", "fault must be one of loss, grad, weight"),
    ("reset now", "reset takes no value, got 'now'"),
    ("lr 1 2", "cannot read command 'lr 1 2'"),
    (None, "cannot read command None"),
])
def test_bad_commands_get_one_clear_line(raw, message):
    with pytest.raises(CommandError) as error:
        parse_command(raw)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_config_defaults_follow_the_paper_and_rosinality():
    config = EngineConfig()
    assert (config.loss, config.lr, config.batch, config.mapping_lr_mult) == ("logit", 0.0, 4, 0.01)  # lr: the model's
    assert (config.snapshot_every, config.collapse_fraction, config.nan_lr_factor) == (50, 0.5, 0.5)


@pytest.mark.parametrize("changes, message", [
    ({"batch": 0}, "batch must be an integer from 1 to 64"),
    ({"lr": -1e-3}, "lr must be 0 \\(the model's own rate\\) or a number > 0 and <= 1, got -0.001"),
    ({"lr": 2.0}, "lr must be 0"),
    ({"loss": "hinge"}, "loss must be one of"),
    ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N, got 'tpu' \\(uncanny runs on NVIDIA GPUs"),
    ({"snapshot_every": 0}, "snapshot_every must be an integer >= 1"),
    ({"memory_snapshots": 1}, "memory_snapshots must be an integer >= 2"),
    ({"probe_size": 1}, "probe_size must be an integer from 2 to 256"),
    ({"collapse_fraction": 1.5}, "collapse_fraction must be a finite number >= 0 and <= 1"),
    ({"nan_lr_factor": 0}, "nan_lr_factor must be a finite number > 0 and <= 1"),
    ({"disk_budget_mb": float("nan")}, "disk_budget_mb must be a finite number > 0"),
    ({"journey_minutes": -5.0}, "journey_minutes must be a finite number >= 0 and <= 525600, got -5.0"),
    ({"journey_minutes": float("nan")}, "journey_minutes must be a finite number >= 0 and <= 525600, got nan"),
    ({"journey_minutes": 1e9}, "journey_minutes must be a finite number >= 0 and <= 525600"),
    ({"journey_minutes": "20"}, "journey_minutes must be a finite number >= 0 and <= 525600, got '20'"),
    ({"journey_iterations": 0}, "journey_iterations must be an integer from 1 to 10000000, got 0"),
    ({"journey_iterations": -2000}, "journey_iterations must be an integer from 1 to 10000000, got -2000"),
    ({"journey_iterations": 2000.5}, "journey_iterations must be an integer from 1 to 10000000, got 2000.5"),
    ({"journey_iterations": 10**8}, "journey_iterations must be an integer from 1 to 10000000"),
])
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        EngineConfig(**changes)


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto", cuda_devices=0) == torch.device("cpu")
    assert resolve_device("cuda:1", cuda_devices=2) == torch.device("cuda:1")
    if not torch.cuda.is_available():  # a CPU-only torch never will have one (exit 2); a CUDA torch may (exit 75)
        with pytest.raises(ConfigError if torch.version.cuda is None else NoDeviceNow,
                           match="no CUDA device is available"):
            resolve_device("cuda:0")
    assert describe_device("cpu") == "cpu"


@pytest.mark.parametrize("name, count, message", [
    ("cuda:7", 1, "device cuda:7: this machine has 1 CUDA device (cuda:0); choose one of them, or auto"),
    ("cuda:2", 2, "device cuda:2: this machine has 2 CUDA devices (cuda:0 .. cuda:1); choose one of them, or auto"),
    ("cuda", 0, "device cuda: no CUDA device is available here now; check the GPU driver (nvidia-smi), or use cpu "
                "or auto"),
    ("cuda:0", 0, "device cuda:0: no CUDA device is available here now; check the GPU driver (nvidia-smi), or use "
                  "cpu or auto"),
])
def test_a_cuda_device_that_is_not_there_is_one_line(name, count, message):
    """One this machine does not have is bad input (exit 2); none at all may be a driver not up yet (exit 75)."""
    with pytest.raises(NoSuchDevice if count else NoDeviceNow) as error:
        check_device_present(name, count)
    assert str(error.value) == message and isinstance(error.value, DeviceUnavailable)
    check_device_present("cuda:0", 1)
    check_device_present("cpu", 0)


def test_a_gpu_engine_takes_two_threads_at_most():
    assert [engine_threads(0, cores, cuda=True) for cores in (1, 2, 16)] == [1, 2, 2]
    assert engine_threads(0, 16) == 15 and engine_threads(4, 16, cuda=True) == 4
