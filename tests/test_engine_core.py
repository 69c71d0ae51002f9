"""The in-process Engine: the inverted objective, determinism, rewind/reset, the non-finite guard, commands."""

import json
import math
import queue
import threading
import time

import pytest
import torch
from torch.nn import functional as F

from installation.engine import COMMANDS, Command, CommandError, Engine, EngineConfig, EngineError, diversity, \
    inverted_loss
from installation.models import CheckpointError, create_stylegan1, load_gan, save_gan

TINY = dict(channels=[32, 32, 16, 16], code_dim=32, n_mlp=2)  # 32 px


def tiny_engine(run_dir, hook=None, **settings):
    return Engine(create_stylegan1(**TINY), EngineConfig(device="cpu", **settings), run_dir, between_steps=hook)


class Lockstep:
    """A command script in lockstep with the engine's loop: the between-steps hook feeds one list of commands per
    pass and waits until the engine's command thread has prepared it, so the next pass applies it."""

    def __init__(self, script, hook=None) -> None:
        self.script, self.hook = iter(script), hook
        self.feed: queue.Queue = queue.Queue()
        self.done = threading.Condition()
        self.fed = self.prepared = 0
        self.handed = False

    def receive(self, timeout):
        with self.done:  # called again: what it handed out last time has been prepared
            self.prepared += self.handed
            self.handed = False
            self.done.notify_all()
        try:
            commands = self.feed.get(timeout=timeout)
        except queue.Empty:
            return []
        self.handed = True
        return commands

    def __call__(self, engine) -> None:
        if self.hook is not None:
            self.hook(engine)
        commands = next(self.script, None)
        if commands is None:
            return
        self.fed += 1
        self.feed.put(commands)
        if "shutdown" not in commands:  # after a shutdown the command thread reads no more
            with self.done:
                assert self.done.wait_for(lambda: self.prepared >= self.fed, timeout=60)


def g_state(engine):
    return {k: v.clone() for k, v in engine.gan.generator.state_dict().items()}


def same_tensors(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def adam_state(engine):
    return [{k: v.clone() for k, v in s.items()} for s in engine.optimizer.state_dict()["state"].values()]


def events(run_dir):
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_hundred_steps_push_the_probe_towards_fake_and_leave_d_untouched(tmp_path):
    engine = tiny_engine(tmp_path)
    d_before = {k: v.clone() for k, v in engine.gan.discriminator.state_dict().items()}
    start = engine.state().probe_d
    for _ in range(100):
        assert engine.step() is not None
    state = engine.state()
    assert state.iteration == 100
    assert state.probe_d < start - 1.0, (start, state.probe_d)  # measured: -0.74 -> -2.38
    assert same_tensors(d_before, engine.gan.discriminator.state_dict())
    assert all(not p.requires_grad and p.grad is None for p in engine.gan.discriminator.parameters())
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == list(range(101))
    assert all(line["probe_d"] is not None for line in lines if line["iteration"] % 10 == 0)
    assert lines[0]["diversity"] == state.diversity0 and lines[-1]["grad_norm"] > 0
    engine.close()


def test_same_seed_same_trajectory_bit_for_bit(tmp_path):
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        engine = tiny_engine(tmp_path / name, seed=seed)
        for _ in range(12):
            engine.step()
        runs.append(g_state(engine))
        engine.close()
    assert same_tensors(runs[0], runs[1])
    assert not same_tensors(runs[0], runs[2])


def test_mapping_network_learns_at_a_hundredth_of_the_lr(tmp_path):
    engine = tiny_engine(tmp_path, lr=2e-3)
    synthesis, mapping = engine.optimizer.param_groups
    assert synthesis["lr"] == 2e-3 and mapping["lr"] == pytest.approx(2e-5)
    assert synthesis["betas"] == (0.0, 0.99)
    assert {id(p) for p in mapping["params"]} == {id(p) for p in engine.gan.mapping_parameters()}
    engine.apply("lr 0.0005")
    assert synthesis["lr"] == 5e-4 and mapping["lr"] == pytest.approx(5e-6)
    engine.close()


def test_lr_0_is_the_models_own_journey_rate_which_its_file_carries(tmp_path):
    gan = create_stylegan1(**TINY)
    engine = Engine(gan, EngineConfig(device="cpu"), tmp_path / "plain")
    assert engine.lr == 1e-3  # a model without a rate of its own (rosinality files) gets DEFAULT_LR
    engine.close()

    gan.journey_lr = 3e-5
    save_gan(gan, tmp_path / "own.pt")
    loaded = load_gan(tmp_path / "own.pt", require_discriminator=True)
    assert loaded.journey_lr == 3e-5 and loaded.describe()["journey_lr"] == 3e-5
    engine = Engine(loaded, EngineConfig(device="cpu"), tmp_path / "own")
    synthesis, mapping = engine.optimizer.param_groups
    assert engine.lr == synthesis["lr"] == 3e-5 and mapping["lr"] == pytest.approx(3e-7)
    engine.apply("lr 0.002")
    assert synthesis["lr"] == 2e-3
    engine.apply("lr 0")  # back to the model's own
    assert engine.lr == synthesis["lr"] == 3e-5
    engine.close()
    engine = Engine(loaded, EngineConfig(device="cpu", lr=1e-4), tmp_path / "set")
    assert engine.lr == 1e-4  # a rate that is set wins
    engine.close()

    ckpt = torch.load(tmp_path / "own.pt", weights_only=True)
    ckpt["meta"]["journey_lr"] = "fast"
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="journey_lr 'fast' is not a learning rate"):
        load_gan(tmp_path / "bad.pt")
    gan.journey_lr = 5.0
    with pytest.raises(ValueError, match="journey_lr must be > 0 and <= 1"):
        save_gan(gan, tmp_path / "never.pt")
    assert not (tmp_path / "never.pt").exists()


def test_rewind_restores_weights_bit_for_bit_with_fresh_moments_and_branches(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=5)
    for _ in range(10):
        engine.step()
    weights = g_state(engine)
    for _ in range(5):
        engine.step()
    moments = adam_state(engine)
    for _ in range(2):
        engine.step()
    ahead = g_state(engine)
    # only the newest snapshot (15) keeps Adam's moments; the rewind points before it hold G alone
    assert engine.store.load(10).optimizer is None
    newest = engine.store.load(15).optimizer["state"].values()
    assert all(same_tensors(a, b) for a, b in zip(moments, newest, strict=True))
    assert engine.rewind(12) == 10  # the nearest snapshot at or before 12
    assert engine.iteration == 10 and engine.branch == 1
    assert same_tensors(weights, g_state(engine))
    assert engine.optimizer.state_dict()["state"] == {}  # Adam starts afresh from a rewind point
    assert engine.store.iterations() == [0, 5, 10]  # the abandoned future is gone
    for _ in range(7):
        engine.step()
    assert not same_tensors(ahead, g_state(engine))  # a new branch draws new batches
    assert [e["to"] for e in events(tmp_path) if e["event"] == "rewind"] == [10]
    # ahead of the journey (a fader at 500 at iteration 17): the newest snapshot, never a refusal
    assert engine.rewind(500) == 15 and engine.iteration == 15
    for _ in range(3):
        engine.step()
    state = engine.state()  # stepped on since: the state still says where the jump went
    assert (state.iteration, state.landed, state.branch) == (18, 15, 2)
    assert [e.get("requested") for e in events(tmp_path) if e["event"] == "rewind"] == [12, 500]
    engine.close()


def test_reset_restores_iteration_zero(tmp_path):
    engine = tiny_engine(tmp_path, snapshot_every=4)
    initial = g_state(engine)
    for _ in range(9):
        engine.step()
    engine.apply("lr 0.002")
    engine.apply("reset")
    assert engine.iteration == 0 and engine.store.iterations() == [0]
    engine.step()
    assert (engine.state().iteration, engine.state().landed, engine.state().branch) == (1, 0, 1)
    engine.apply("reset")
    assert same_tensors(initial, g_state(engine))
    assert engine.optimizer.state_dict()["state"] == {} and engine.lr == 0.002  # live settings stay
    assert engine.state().probe_d == engine.probe_d0
    engine.close()


@pytest.mark.parametrize("fault", ["loss", "grad", "weight"])
def test_non_finite_step_rolls_back_and_halves_the_lr(tmp_path, fault):
    engine = tiny_engine(tmp_path, snapshot_every=5)
    for _ in range(7):
        engine.step()
    at_five = engine.store.load(5).generator
    moments = [{k: v.clone() for k, v in s.items()} for s in engine.store.load(5).optimizer["state"].values()]
    engine.apply(f"fault {fault}")
    assert engine.step() is None
    assert engine.iteration == 5 and engine.lr == 5e-4 and engine.rollbacks == 1
    assert same_tensors(at_five, engine.gan.generator.state_dict())
    # back to the newest snapshot, which keeps its moments: Adam goes on as it was there
    assert all(same_tensors(a, b) for a, b in zip(moments, adam_state(engine), strict=True))
    assert all(torch.isfinite(p).all() for p in engine.gan.generator.parameters())
    assert "non-finite" in engine.errors[-1] and "rolled back to 5" in engine.errors[-1]
    assert [e["cause"] for e in events(tmp_path) if e["event"] == "rollback"] == [
        {"loss": "loss, gradients, weights", "grad": "gradients, weights", "weight": "weights"}[fault]]
    assert engine.step() is not None  # carries on
    engine.close()


def test_a_nan_weight_never_reaches_a_frame(tmp_path):
    frames = []

    def render(engine):  # what the display will do between steps
        with torch.no_grad():
            frames.append(engine.gan.generate(torch.ones(1, 32), engine.gan.make_noise(1, torch.Generator())))

    script = Lockstep([[], [], [], [], ["fault weight"], [], [], ["fault loss"], [], [], ["shutdown"]], render)
    engine = tiny_engine(tmp_path, hook=script, snapshot_every=3)
    engine.run(receive=script.receive)
    with torch.no_grad():  # poison a weight directly, as a buggy hook might
        next(engine.gan.generator.parameters()).view(-1)[0] = math.inf
    assert engine.step() is None
    assert engine.rollbacks == 3 and len(frames) == 12
    assert all(torch.isfinite(frame).all() for frame in frames)
    assert all(torch.isfinite(p).all() for p in engine.gan.generator.parameters())
    engine.close()


def test_repeated_rollbacks_pause_the_engine_until_resumed(tmp_path):
    engine = tiny_engine(tmp_path, max_rollbacks=2)
    for _ in range(2):
        engine.apply("fault loss")
        engine.step()
    state = engine.state()
    assert state.status == "failed" and "2 rollbacks in a row" in state.failure
    assert engine.lr == 2.5e-4
    engine.run()  # with no command source, a paused engine returns instead of spinning
    assert engine.iteration == 0
    engine.apply("resume")
    assert engine.state().status == "running" and engine.step() is not None
    engine.close()


def test_bad_commands_are_rejected_and_the_engine_keeps_running(tmp_path):
    engine = tiny_engine(tmp_path)
    bad = ["warp 9", "rewind -1", Command("warp", id=7), "rewind 1.5", "lr 2", "lr -1", "lr nan", "batch 0",
           "batch 65", "loss hinge", {"name": "lr"}, ("pause", 3), 42, "", Command("lr", 5.0, 8)]
    script = Lockstep([[], [], [], bad, [], [], [], ["lr 0.0007", "batch 2", "loss softplus"], [], ["shutdown"]])
    engine.between_steps = script
    engine.run(receive=script.receive)
    state = engine.state()
    errors = [e for e in (json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines())
              if e["event"] == "error"]
    messages = [e["message"] for e in errors]
    assert len(messages) == len(bad) and state.commands == len(bad) + 4
    for expected in ["unknown command 'warp'", "rewind iteration must be an integer >= 0, got -1",
                     "'1.5' is not an integer",
                     "lr must be 0 (the model's own rate) or a number > 0 and <= 1, got 2.0",
                     "batch must be an integer from 1 to 64, got 0",
                     "batch must be an integer from 1 to 64, got 65", "loss must be one of logit, softplus, log",
                     "lr needs a value", "pause takes no value", "cannot read command 42", "cannot read command ''"]:
        assert any(expected in m for m in messages), expected
    assert all(m.startswith("rejected command: ") and "\n" not in m for m in messages)
    # the two that carried an id are named, so each refusal can reach the sender of that command
    assert state.refusals == ((7, "rejected command: unknown command 'warp'; known: " + ", ".join(COMMANDS)),
                              (8, "rejected command: lr must be 0 (the model's own rate) or a number > 0 and <= 1, "
                                  "got 5.0"))
    assert state.iteration == 10 and state.status == "stopping"  # it kept stepping through all of that
    assert (state.lr, state.batch, state.objective) == (7e-4, 2, "softplus")
    with pytest.raises(CommandError, match="cannot rewind to -3: iterations start at 0"):
        engine.rewind(-3)
    engine.close()


def test_rate_limit_slows_the_loop(tmp_path):
    engine = tiny_engine(tmp_path)
    engine.apply("limit 20")
    start = time.monotonic()
    engine.run(until=6)
    assert time.monotonic() - start >= 5 / 20
    engine.close()


def test_collapse_is_flagged_when_the_probe_stops_varying(tmp_path):
    engine = tiny_engine(tmp_path, probe_every=1)
    assert engine.state().collapsed is False
    with torch.no_grad():  # every z now maps to the same w; noise strengths start at zero: identical images
        engine.gan.generator.style[-2].linear.weight_orig.zero_()
    engine.step()
    state = engine.state()
    assert state.collapsed is True and state.diversity < 0.5 * state.diversity0
    assert any(e["event"] == "collapse" for e in events(tmp_path))
    engine.close()


def test_diversity_measures_the_pictures_shown_not_runaway_values():
    """Two images saturated to the same posterised colours look identical on screen, however far apart their values."""
    pattern = torch.sign(torch.randn(1, 3, 32, 32))
    posterised = torch.cat([pattern * 5.0, pattern * 9000.0])
    assert diversity(posterised) == pytest.approx(0.0, abs=1e-6)
    two_pictures = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert diversity(two_pictures) > 0.9  # unrelated noise shares no structure


def test_diversity_sees_one_shared_form_through_small_shifts():
    """The journey's end: one hard-edged form, its copies a pixel apart. Far less diverse than a batch of faces."""
    from installation.training.faces import procedural_faces

    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    shifts = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1)]
    heads = torch.stack([(((x - 32 - dx) / 18) ** 2 + ((y - 30 - dy) / 24) ** 2 < 1).float().expand(3, 64, 64)
                         for dx, dy in shifts]) * 2 - 1
    faces = torch.from_numpy(procedural_faces(6, seed=0, resolution=64)).permute(0, 3, 1, 2) / 127.5 - 1
    assert type(diversity(faces)) is float  # a number, as metrics.jsonl and pytest.approx take it
    assert diversity(heads) < 0.2 * diversity(faces)  # 0.11 against 0.82
    assert diversity(heads * 50) == diversity(heads)  # runaway values look the same on screen
    # 128 px pictures are compared at 64 px, so a model's size does not move its figure
    assert diversity(F.interpolate(faces, scale_factor=2, mode="bilinear")) == pytest.approx(diversity(faces), abs=0.05)
    # sizes down to a tiny test model's 4 px give a value, fewer scales used
    assert 0 < diversity(faces[:, :, ::16, ::16]) <= 1


def test_large_probes_are_measured_in_chunks_of_pairs(monkeypatch):
    from installation.engine import similarity

    pictures = torch.rand(7, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    whole = diversity(pictures)
    monkeypatch.setattr(similarity, "PAIRS_PER_CHUNK", 4)  # 21 pairs in 6 chunks
    assert diversity(pictures) == pytest.approx(whole, abs=1e-6)


def test_a_run_folder_from_the_older_diversity_measure_is_rebased_on_resume(tmp_path):
    engine = tiny_engine(tmp_path)
    for _ in range(3):
        engine.step()
    engine.close()
    run_json = tmp_path / "run.json"
    info = json.loads(run_json.read_text())
    measured = info.pop("diversity0")
    assert info.pop("diversity_measure") == "1 - ms-ssim"
    run_json.write_text(json.dumps({**info, "diversity0": 123.0}))  # as an older release wrote it (pixel RMS)

    engine = tiny_engine(tmp_path)
    assert engine.iteration == 3 and engine.diversity0 == pytest.approx(measured) and not engine.collapsed
    assert json.loads(run_json.read_text())["diversity_measure"] == "1 - ms-ssim"
    (rebased,) = [e for e in events(tmp_path) if e["event"] == "diversity_remeasured"]
    assert rebased["old"] == 123.0 and rebased["diversity0"] == pytest.approx(measured)
    engine.close()


def test_losses():
    logits = torch.tensor([-2.0, 0.5, 3.0])
    assert inverted_loss("logit", logits) == pytest.approx(0.5)
    assert inverted_loss("softplus", logits).item() == pytest.approx(
        sum(math.log1p(math.exp(v)) for v in (-2.0, 0.5, 3.0)) / 3)
    assert inverted_loss("log", torch.tensor([-1e5])).item() == pytest.approx(-math.log(1 + 1e5), rel=1e-5)
    for extreme in (-1e30, -1e6, 0.0, 1e6, 1e30):
        x = torch.tensor([extreme, extreme / 2], requires_grad=True)
        loss = inverted_loss("log", x)
        loss.backward()
        assert math.isfinite(loss.item()) and loss.item() <= 0 and torch.isfinite(x.grad).all()
        assert x.grad.min() >= 0  # descending the loss always lowers the logits
    with pytest.raises(ValueError):
        inverted_loss("hinge", logits)


def test_a_gan_without_discriminator_is_refused(tmp_path):
    gan = create_stylegan1(**TINY)
    gan.discriminator = None
    with pytest.raises(EngineError, match="no discriminator"):
        Engine(gan, EngineConfig(device="cpu"), tmp_path)
