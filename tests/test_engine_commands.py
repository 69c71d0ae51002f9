"""Command parsing and engine settings validation (no model needed)."""

import pytest
import torch

from installation.engine import (COMMANDS, Command, CommandError, ConfigError, EngineConfig, parse_command,
                                resolve_device)


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
    ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N"),
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
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device is available"):
            resolve_device("cuda:0")
