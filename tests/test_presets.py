"""Presets load, merge with defaults, and refuse every bad value with one line naming file and key."""

import dataclasses

import pytest

from installation.outputs import KINDS as OUTPUT_KINDS
from installation.presets import PRESET_DIR, Preset, PresetError, load_preset


def test_shipped_presets_load_and_default_lists_every_key():
    default = load_preset("default")
    assert default == dataclasses.replace(Preset(), source=default.source)  # the file documents the defaults
    text = (PRESET_DIR / "default.toml").read_text()
    for section in ("model", "engine", "walk", "display", "render", "osc", "http", "record", "logs"):
        for f in dataclasses.fields(getattr(default, section)):
            assert f"\n{f.name} = " in text, f"{section}.{f.name} is not documented in default.toml"
    for kind, (config, _) in OUTPUT_KINDS.items():  # the [[output]] examples, commented out
        for f in dataclasses.fields(config):
            assert f"\n# {f.name} = " in text, f"[[output]] {kind}: {f.name} is not documented in default.toml"
    gallery = load_preset("gallery")
    assert gallery.display.keys is False and gallery.display.fullscreen and gallery.walk == default.walk
    assert load_preset(PRESET_DIR / "performance.toml").display.hud is True


def test_flags_override_a_preset_and_are_validated():
    preset = load_preset("gallery").replace("engine", lr=0.01, batch=None)
    assert preset.engine.lr == 0.01 and preset.engine.batch == 4
    with pytest.raises(PresetError, match="engine: batch must be an integer from 1 to 64, got 0"):
        preset.replace("engine", batch=0)


@pytest.mark.parametrize("text, message", [
    ("[walk]\nperiod = -3\n", r"\[walk\] period must be a finite number > 0"),
    ("[walk]\nperiod = 'slow'\n", r"\[walk\] period must be a number, got 'slow'"),
    ("[engine]\nlr = -0.5\n", r"\[engine\] lr must be 0 \(the model's own rate\) or a number > 0 and <= 1"),
    ("[engine]\nloss = 'hinge'\n", r"\[engine\] loss must be one of logit, softplus, log"),
    ("[engine]\nbatch = 2.5\n", r"\[engine\] batch must be a whole number, got 2.5"),
    ("[engine]\nlearning_rate = 0.1\n", r"\[engine\] unknown key 'learning_rate'; known keys: batch, "),
    ("[display]\nmode = 'zoom'\n", r"\[display\] mode must be one of fit, fill, stretch"),
    ("[display]\nletterbox = [1, 0]\n", r"\[display\] letterbox must be three numbers"),
    ("[display]\nfullscreen = 'yes'\n", r"\[display\] fullscreen must be true or false"),
    ("[display]\nzoom = 2\n", r"\[display\] unknown key 'zoom'; known keys: "),
    ("[display]\ncrossfade = -5\n", r"\[display\] crossfade must be -1 \(follow the generator's frame interval\) "
                                   r"or 0..10 seconds \(0 cuts\), got -5.0"),
    ("[display]\ncrossfade = 11\n", r"\[display\] crossfade must be -1 .* or 0..10 seconds"),
    ("[display]\nmonitor = -1\n", r"\[display\] monitor must be an index \(0, 1, ...\) or part of a monitor's name"),
    ("[model]\nresolution = 100\n", r"\[model\] resolution must be 0 or a power of two"),
    ("[render]\nshare = 1.5\n", r"\[render\] share must be a finite number"),
    ("[engine]\nhang_seconds = 0.5\n", r"\[engine\] hang_seconds must be a finite number >= 30 and <= 3600"),
    ("[engine]\nhang_seconds = 5\n", r"\[engine\] hang_seconds must be a finite number >= 30 and <= 3600"),
    ("[engine]\nthreads = 10000\n", r"\[engine\] threads must be 0 \(all cores but one\) or 1 to \d+ \(the cores "
                                    r"this process may use\), got 10000"),
    ("[engine]\nthreads = -1\n", r"\[engine\] threads must be 0 \(all cores but one\) or 1 to \d+"),
    ("[engine]\njournal_mb = 0\n", r"\[engine\] journal_mb must be a finite number >= 0.01"),
    ("[engine]\njourney_minutes = -20\n", r"\[engine\] journey_minutes must be a finite number >= 0 and <= 525600, "
                                          r"got -20.0"),
    ("[engine]\njourney_minutes = nan\n", r"\[engine\] journey_minutes must be a finite number >= 0 and <= 525600, "
                                          r"got nan"),
    ("[engine]\njourney_minutes = 1e7\n", r"\[engine\] journey_minutes must be a finite number >= 0 and <= 525600"),
    ("[engine]\njourney_minutes = '30'\n", r"\[engine\] journey_minutes must be a number, got '30'"),
    ("[engine]\njourney_iterations = 0\n", r"\[engine\] journey_iterations must be an integer from 1 to 10000000"),
    ("[engine]\njourney_iterations = -5\n", r"\[engine\] journey_iterations must be an integer from 1 to 10000000"),
    ("[engine]\njourney_iterations = 2000.0\n", r"\[engine\] journey_iterations must be a whole number, got 2000.0"),
    ("[engine]\njourney_iterations = inf\n", r"\[engine\] journey_iterations must be a whole number, got inf"),
    ("[gallery]\nmax_iterations = -1\n", r"\[gallery\] max_iterations must be an integer >= 0"),
    ("[record]\nmax_minutes = -1\n", r"\[record\] max_minutes must be a finite number >= 0"),
    ("[record]\nencoder = \"gpu\"\n", r"\[record\] encoder must be one of auto, x264, nvenc, got 'gpu'"),
    ("[record]\nencoder = 5\n", r"\[record\] encoder must be a string, got 5"),
    ("[engine]\ndevice = \"tpu\"\n", r"\[engine\] device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("[record]\nfolder = \"rec\\u0000ordings\"\n", r"\[record\] folder must name a folder .*, got 'rec\\x00ordings'"),
    ("[record]\nfolder = \"/proc/self/recordings\"\n",
     r"\[record\] folder '/proc/self/recordings' is under /proc, a view of the kernel, not a disk; choose a folder "
     r"on a disk"),
    ("[record]\nfolder = \"/sys/recordings\"\n", r"\[record\] folder '/sys/recordings' is under /sys"),
    ("[logs]\nthumbnail_width = 8\n", r"\[logs\] thumbnail_width must be an integer from 16 to 1920"),
    ("[gallery]\nhold_seconds = -1\n", r"\[gallery\] hold_seconds must be a finite number"),
    ("[http]\nport = 70000\n", r"\[http\] port must be an integer from 0 to 65535, got 70000"),
    ("[http]\nhost = 'localhost'\n", r"\[http\] host must be an IP address to listen on"),
    ("[http]\nallow = ['10.0.0.0/33']\n", r"\[http\] allow entries must be networks like"),
    ("[http]\ntoken = 'two words'\n", r"\[http\] token must be at most 256 printable ASCII characters without "
                                      r"spaces \(the value is not repeated here: it is a secret\)"),
    ("[http]\ntoken = 1234\n", r"\[http\] token must be a string, got 1234"),
    ("[osc]\nadvertise = 'yes'\n", r"\[osc\] advertise must be true or false"),
    ("[osc]\noscquery_port = 5678\n", r"\[osc\] unknown key 'oscquery_port'; known keys: advertise, allow, "),
    ("[audio]\ngain = 1\n", r"unknown table \[audio\]"),
    ("walk = 3\n", r"walk must be a table"),
    ("[walk\nperiod = 3\n", r"not valid TOML"),
])
def test_bad_presets_are_one_line_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PresetError, match=message) as info:
        load_preset(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_preset_lists_the_shipped_ones():
    with pytest.raises(PresetError, match="not found; give a .toml file or one of: default, gallery, performance"):
        load_preset("nightclub")


def test_a_monitor_index_may_be_a_toml_number(tmp_path):
    path = tmp_path / "second-screen.toml"
    path.write_text("[display]\nmonitor = 1\ncrossfade = 0\n")
    display = load_preset(path).display
    assert display.monitor == "1" and display.crossfade == 0.0


def test_a_folder_or_a_loop_of_links_given_as_a_preset_is_named_as_such(tmp_path):
    (tmp_path / "shows").mkdir()
    (tmp_path / "a.toml").symlink_to(tmp_path / "b.toml")
    (tmp_path / "b.toml").symlink_to(tmp_path / "a.toml")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for given, what in [(tmp_path / "shows", "is a folder, not a preset file"),
                        (tmp_path / "a.toml", "is a loop of symbolic links"),
                        (tmp_path / "loop", "is a loop of symbolic links")]:
        with pytest.raises(PresetError, match=f"preset '{given}' {what}; give a .toml file") as info:
            load_preset(given)
        assert "\n" not in str(info.value) and "default, gallery, performance" in str(info.value)
