"""OSC against a real running installation: the engine process training, the frames it draws, the picture on an
EGL framebuffer, and a controller talking to it over real UDP on loopback. Every address is checked by what it
does, seen from outside: feedback values, the iteration of the frames, the pixels."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from installation.control.service import ControlService
from installation.display.offscreen import Offscreen
from installation.engine import EngineConfig
from installation.live.installation import Installation
from installation.models import create_stylegan1, load_gan, save_gan
from installation.presets import Preset
from installation.control.config import OscConfig
from installation.display.config import DisplayConfig
from installation.engine.config import RenderConfig, WalkConfig
from installation.walks import make_walks, render_walk_frames

sys.path.insert(0, str(Path(__file__).parent))
import osc_fuzz  # noqa: E402
from osc_client import WAIT, Client  # noqa: E402

SIZE = (160, 120)
SNAPSHOT_EVERY = 5


class Live:
    """An installation ticked by the test (GL belongs to this thread), with a controller beside it."""

    def __init__(self, checkpoint: Path, run_dir: Path, ctx, allow=("127.0.0.0/8",)) -> None:
        self.preset = Preset(
            engine=EngineConfig(device="cpu", threads=1, snapshot_every=SNAPSHOT_EVERY, probe_every=5, lr=3e-3),
            walk=WalkConfig(keyframes=3, period=3600.0, grid=2),  # an hour per loop: the picture holds still
            display=DisplayConfig(width=SIZE[0], height=SIZE[1], crossfade=0.0),
            render=RenderConfig(share=0.5, max_fps=20),
            osc=OscConfig(host="127.0.0.1", port=0, state_every=0.2, allow=allow))
        self.control = ControlService(self.preset.osc)
        self.control.start()
        self.surface = Offscreen(*SIZE, ctx=ctx)
        self.installation = Installation(self.preset, checkpoint, 32, run_dir, ctx, SIZE, self.control)
        self.client = Client(self.control.osc.address)
        self.run_dir, self.refreshes = run_dir, 0

    def tick(self) -> np.ndarray:
        self.surface.use()
        self.installation.tick(SIZE)
        self.refreshes += 1
        return self.surface.read()

    def until(self, predicate, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; engine {self.installation.state}"
            self.tick()
            time.sleep(0.01)

    def reply(self, address: str, where=None, timeout: float = WAIT) -> list:
        """A reply while the display keeps ticking (echoes come from state the loop publishes)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.client.expect(address, where, wait=0.02)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                self.tick()

    def frame(self):
        return self.installation.channel.read()

    def close(self) -> None:
        self.client.close()
        self.installation.close()
        self.control.stop()
        self.surface.release()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_gan(create_stylegan1([32, 32, 16, 16], code_dim=32, n_mlp=2, seed=1), path)
    return path


@pytest.fixture
def live(checkpoint, tmp_path, egl_ctx):
    running = Live(checkpoint, tmp_path / "run", egl_ctx)
    yield running
    running.close()


def offline(gan_file: Path, settings, walk_time: float) -> np.ndarray:
    """The frame the renderer must show: the walk drawn by a generator loaded from a file."""
    gan = load_gan(gan_file)
    walks = make_walks(4, gan.latent_dim, 3, settings.period, settings.seed)
    return render_walk_frames(gan, walks[:4 if settings.grid else 1], walk_time, settings.truncation)


def matches(frame, expected: np.ndarray) -> bool:
    return frame.pixels.shape == expected.shape and np.abs(frame.pixels.astype(int) - expected).max() <= 2


def test_every_address_does_what_it_documents(live, checkpoint):
    installation, client = live.installation, live.client
    client.send("/uncanny/ping")
    assert live.reply("/uncanny/pong") == []
    live.until(lambda: installation.state.iteration >= 2 * SNAPSHOT_EVERY + 1, "two snapshots")

    # pause / resume: the iteration stops and goes on; the walk keeps being drawn
    client.send("/uncanny/pause")
    assert live.reply("/uncanny/state/paused", lambda a: a == [1])
    held, sequence = installation.state.iteration, installation.last_sequence
    for _ in range(20):
        live.tick()
        time.sleep(0.02)
    assert installation.state.iteration == held and installation.last_sequence > sequence
    client.send("/uncanny/snapshot")
    live.until(lambda: held in installation.state.snapshots, "the snapshot asked for")
    client.send("/uncanny/snapshots")
    assert held in live.reply("/uncanny/snapshots")

    # rewind N: the newest snapshot at or before N, and the next frames are that snapshot's generator
    client.send("/uncanny/rewind", SNAPSHOT_EVERY + 2)
    live.until(lambda: installation.state.iteration == SNAPSHOT_EVERY, "the rewind")
    live.until(lambda: live.frame().iteration == SNAPSHOT_EVERY, "frames of the rewound weights")
    frame = live.frame()
    assert matches(frame, offline(live.run_dir / "snapshots" / f"it{SNAPSHOT_EVERY:08d}.pt",
                                  installation.renderer.settings, frame.walk_time))
    # rewind without an argument: one snapshot back; reset: the unmodified model
    client.send("/uncanny/rewind")
    live.until(lambda: installation.state.iteration == 0, "one snapshot back")
    client.send("/uncanny/resume")
    live.until(lambda: installation.state.iteration >= 3, "training again")
    client.send("/uncanny/pause")
    client.send("/uncanny/reset")
    live.until(lambda: installation.state.iteration == 0 and installation.state.paused, "the reset")
    live.until(lambda: live.frame().iteration == 0 and live.frame().time > time.time() - 0.5, "fresh frames")
    frame = live.frame()
    assert matches(frame, offline(checkpoint, installation.renderer.settings, frame.walk_time))

    # engine settings: applied, and echoed with the value in force
    for address, value in [("/uncanny/lr", 0.0005), ("/uncanny/loss", "softplus"), ("/uncanny/batch", 2),
                           ("/uncanny/speed", 4.0)]:
        client.send(address, value)
        echoed = live.reply(address, lambda a, v=value: a == [pytest.approx(v)] if isinstance(v, float) else a == [v])
        assert echoed
    state = installation.state
    assert (state.lr, state.objective, state.batch, state.limit) == (0.0005, "softplus", 2, 4.0)

    # out of range: refused with an error reply, and the fader is told the value in force
    client.send("/uncanny/lr", 2.0)
    assert "lr" in live.reply("/uncanny/error")[0]
    # the engine's own refusal reaches the sender too
    client.send("/uncanny/rewind", 10**6)
    assert "cannot rewind" in live.reply("/uncanny/error", lambda a: "rewind" in a[0])[0]

    # the walk, changed without a jump, and echoed
    before = live.tick()
    for address, value in [("/uncanny/walk/period", 20.0), ("/uncanny/walk/truncation", 0.5),
                           ("/uncanny/walk/seed", 3)]:
        client.send(address, value)
        assert live.reply(address, lambda a, v=value: a == [pytest.approx(v)])
    after = live.tick()
    assert np.abs(after.astype(int) - before.astype(int)).mean() < 20  # a glide, not a cut
    settings = installation.renderer.settings
    assert (settings.period, settings.truncation, settings.seed) == (20.0, 0.5, 3)

    # the view: the population grid, the HUD
    client.send("/uncanny/view/grid", 1)
    assert live.reply("/uncanny/view/grid", lambda a: a == [1])
    live.until(lambda: len(live.frame().pixels) == 4, "the 2 x 2 grid from the engine")
    client.send("/uncanny/view/hud", 1)
    assert live.reply("/uncanny/view/hud", lambda a: a == [1]) and installation.hud

    # blackout: the presented picture goes black, and comes back
    client.send("/uncanny/view/blackout", 1.0)
    assert live.reply("/uncanny/view/blackout", lambda a: a == [1.0])
    client.send("/uncanny/view/hud", 0)
    live.until(lambda: live.tick().max() == 0, "a black frame")
    client.send("/uncanny/view/blackout", 0.0, 0.5)
    live.until(lambda: live.tick().std() > 10, "the picture back")

    # the state reply carries every field
    for _ in range(5):
        live.tick()
    client.backlog.clear()  # older feedback
    while client.pending() is not None:
        pass
    client.send("/uncanny/state")
    assert live.reply("/uncanny/state/iteration") == [installation.state.iteration]
    assert live.reply("/uncanny/state/status") == ["paused"]
    assert live.reply("/uncanny/state/collapsed") == [0]


def test_rewind_and_reset_while_training_show_the_target_at_once_and_the_feedback_says_so(live, checkpoint):
    installation, client = live.installation, live.client
    client.send("/uncanny/ping")  # now a recent sender: the feedback comes here
    live.reply("/uncanny/pong")
    live.until(lambda: installation.state.iteration >= 2 * SNAPSHOT_EVERY + 2, "two snapshots")
    rewound = live.run_dir / "snapshots" / f"it{SNAPSHOT_EVERY:08d}.pt"
    for address, args, target, weights in [("/uncanny/rewind", (SNAPSHOT_EVERY + 2,), SNAPSHOT_EVERY, rewound),
                                           ("/uncanny/reset", (), 0, checkpoint)]:
        live.until(lambda: installation.frame_iteration > target + 1, "frames of newer weights")  # still training
        sequence, generation = installation.last_sequence, installation.motion.generation
        # the feedback so far holds every iteration up to now, the target's too: dropped, so a reply means the jump
        # (anything still on its way is as new as the frames on screen, above the target)
        client.backlog.clear()
        while client.pending() is not None:
            pass
        client.send(address, *args)
        assert live.reply("/uncanny/state/shown_iteration", lambda a, t=target: a == [t])
        shown = installation.motion.position(time.time())[1]
        assert shown.generation > generation and shown.iteration == target
        jumped = [f for f in installation.channel.read_since(sequence) if f.generation > generation]
        assert jumped and all(f.iteration == target for f in jumped[:3])  # the next frames: the target's weights
        for frame in jumped[:3]:
            assert matches(frame, offline(weights, installation.renderer.settings, frame.walk_time))
        assert live.reply("/uncanny/state/iteration", lambda a, t=target: a == [t])  # reported, not skipped
    live.until(lambda: installation.state.iteration > 1, "training on from realism")


def test_the_journey_pace_is_set_live_echoed_and_bad_values_change_nothing(live):
    installation, client = live.installation, live.client
    live.until(lambda: installation.state.status == "running", "the engine")
    client.send("/uncanny/journey/minutes", 30.0)
    assert live.reply("/uncanny/journey/minutes", lambda a: a == [30.0])
    assert installation.state.journey_minutes == 30.0 and installation.state.journey_iterations == 2000
    for bad, reason in [(-1.0, "journey_minutes must be a finite number >= 0"), (float("nan"), "finite number"),
                        (1e7, "<= 525600"), ("slow", "expects a number")]:
        client.send("/uncanny/journey/minutes", bad)
        assert reason in live.reply("/uncanny/error", lambda a, r=reason: r in a[0])[0]
        assert live.reply("/uncanny/journey/minutes") == [30.0]  # the fader is told the value in force
    commands = installation.state.commands
    for _ in range(10):
        live.tick()
    assert installation.state.journey_minutes == 30.0 and installation.state.commands == commands


def test_ten_thousand_malformed_datagrams_during_a_live_run(live):
    installation, client = live.installation, live.client
    live.until(lambda: installation.state.iteration >= 2, "training")
    commands, refreshes = installation.state.commands, live.refreshes
    sequence = installation.last_sequence
    sent = 0
    for datagram in osc_fuzz.datagrams(10_000, seed=7):
        client.send_raw(datagram)
        sent += 1
        if sent % 250 == 0:
            live.tick()  # the display keeps presenting through it
            time.sleep(0.005)  # let the socket's buffer drain: a flood beyond it is the kernel's to drop
    assert sent == 10_000
    # the flood can still fill the server's receive buffer for a moment, and the kernel drops what does not fit
    # (the ping too): ask again, as a controller would, until the bound
    deadline, answered = time.monotonic() + WAIT, None
    while answered is None and time.monotonic() < deadline:
        client.send("/uncanny/ping", 4242)
        try:
            answered = live.reply("/uncanny/pong", lambda a: a == [4242], timeout=0.5)
        except AssertionError:
            continue
    assert answered == [4242]
    live.until(lambda: installation.last_sequence > sequence + 3, "new frames after the fuzz")
    assert live.refreshes >= refreshes + 40  # it presented all through the flood
    assert installation.state.commands == commands  # not one of them reached the engine
    assert installation.state.status == "running"


def test_a_sender_outside_allow_is_ignored(checkpoint, tmp_path, egl_ctx):
    closed = Live(checkpoint, tmp_path / "run", egl_ctx, allow=("10.0.0.0/8",))
    try:
        closed.until(lambda: closed.installation.state.status == "running", "the engine")
        closed.client.send("/uncanny/pause")
        closed.client.send("/uncanny/ping")
        with pytest.raises(AssertionError, match="no /uncanny/pong"):
            closed.reply("/uncanny/pong", timeout=1.5)
        iteration = closed.installation.state.iteration
        closed.until(lambda: closed.installation.state.iteration > iteration + 1, "training that was not paused")
    finally:
        closed.close()
