"""The engine in its own process ("the GPU process"), started and supervised by the caller.

Caller and engine share no memory and no locks: commands go down one pipe, states (state.py) come up another. Each
end of each pipe is held by one process only, so when the engine dies (crash, kill -9) the caller reads EOF instead of
hanging, and when the caller dies the engine reads EOF and shuts down cleanly (its events then end "abandoned", not
"stop": the installation did not stop, it died). The engine publishes from a thread that holds only the newest
state, so a caller that stops reading never stalls training. `restart()` starts a fresh process on the same run
folder, which resumes from the newest complete snapshot.

Signals: the engine ignores SIGINT and SIGHUP (a terminal's Ctrl-C and hang-up reach the whole process group; the
caller decides when the engine stops) and takes SIGTERM (a service manager stopping the group, or `terminate()`)
as a request for a clean shutdown with a final snapshot. It starts with all three ignored, so a signal during its
seconds of start-up cannot kill it either.

Stopping and killing wait a bounded time. A process that outlives SIGKILL is stuck in the kernel (a GPU driver
call that never returns: state D); nothing here can end it, and it keeps the run folder's lock, so `kill()`,
`stop()` and `restart()` raise EngineUnkillable instead of waiting for ever (the caller ends the installation with a
status the service restarts, see live/supervisor.py), and no new engine is started beside it.

A CUDA device that has gone (a driver reset, a GPU off the bus) is a crash, not a refusal: a restart may find it back.

A start the engine refuses for good (another engine holds the folder, another model's folder, an unusable
checkpoint or setting) is reported as status "refused": restarting cannot help, so a supervisor should stop rather
than retry. Each restart passes the cause of the previous death to the new engine, which records it in events.jsonl.

`drawer` (drawer.py: the display's frames, drawn beside training) and `between_steps` (a hook between steps) are
pickled into the child: pass a module-level function or an instance of a module-level class, and create GPU/GL
resources lazily, inside the engine process.
Spawn re-imports the caller's main module in the child, so a script that starts an engine needs the usual
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import Any

import torch

from ..exits import TryAgain
from ..messages import first_line
from ..models import CheckpointError, load_gan
from .commands import MAX_WAITING, SETTINGS, Command, command_name
from .config import ConfigError, DeviceUnavailable, EngineConfig, engine_threads, resolve_device
from .drawer import FrameDrawer
from .engine import Engine, EngineError, EngineRefused, Hook
from .state import EngineState

GROUP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
TERMINATE_SECONDS = 5.0  # after a clean shutdown's timeout: SIGTERM, then this long before SIGKILL
KILL_SECONDS = 10.0  # after SIGKILL: a process still there then is stuck in the kernel (EngineUnkillable)


class EngineUnkillable(EngineError, TryAgain):
    """The engine process outlived SIGKILL: stuck in the kernel, usually in the GPU driver; one line."""


@dataclass(frozen=True)
class _Spec:
    checkpoint: str
    run_dir: str
    config: EngineConfig
    resolution: int | None
    use_ema: bool
    between_steps: Hook | None
    drawer: FrameDrawer | None
    previous_death: str | None = None


class EngineProcess:
    """Start, command, watch, stop and restart an engine running in a spawned process."""

    def __init__(self, checkpoint: str | os.PathLike, run_dir: str | os.PathLike, config: EngineConfig | None = None,
                 resolution: int | None = None, use_ema: bool = True, between_steps: Hook | None = None,
                 drawer: FrameDrawer | None = None) -> None:
        self._spec = _Spec(str(checkpoint), str(run_dir), config or EngineConfig(), resolution, use_ema, between_steps,
                           drawer)
        self._context = multiprocessing.get_context("spawn")  # fork would copy torch/CUDA/GL state: unsafe
        self._process: multiprocessing.process.BaseProcess | None = None
        self._commands: Connection | None = None
        self._states: Connection | None = None
        self._state = EngineState()
        self._waiting: deque[Any] = deque()  # commands sent while the pipe was full, oldest first
        self.unkillable: str | None = None  # set once a process outlived SIGKILL

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self, previous_death: str | None = None) -> None:
        """Start the engine process; `previous_death` (why the last one ended) goes into its events.jsonl."""
        if self.unkillable:
            raise EngineUnkillable(self.unkillable)
        if self.alive:
            raise EngineError("the engine process is already running")
        self._close_pipes()
        commands_out, commands_in = self._context.Pipe(duplex=False)
        states_out, states_in = self._context.Pipe(duplex=False)
        spec = dataclasses.replace(self._spec, previous_death=previous_death)
        process = self._context.Process(target=_serve, args=(spec, commands_out, states_in),
                                        name="uncanny-engine", daemon=True)
        with _group_signals_ignored():  # inherited through exec by the child (and the resource tracker)
            resource_tracker.ensure_running()
            process.start()
        commands_out.close()  # the child's ends: holding them here would hide its death from us
        states_in.close()
        self._process, self._commands, self._states = process, commands_in, states_out
        self._state = EngineState()

    def send(self, command: Command | str | dict | tuple) -> None:
        """Queue a command; the engine validates it and reports a rejection in `poll()`'s `errors` (and, for a
        command with an id, `refusals`). Never blocks: a hung engine stops reading, and a display waiting on its full
        pipe could never kill it (live/supervisor.py); commands are far smaller than the page a writable pipe has
        free. While the pipe is full (a long step, a slow device) commands wait here in order, each setting (lr,
        limit, loss, batch, render) keeping only its newest value; a trigger beyond MAX_WAITING waiting is refused
        with EngineError, never dropped unsaid. `poll()` sends what waits as soon as the pipe has room."""
        if self._commands is None or not self.alive:
            raise EngineError("the engine process is not running; restart it")
        self._flush()
        if not self._waiting and self._writable():
            try:
                self._commands.send(command)
            except (OSError, ValueError):
                raise EngineError("the engine process is not running; restart it") from None
            return
        name = command_name(command)
        if name in SETTINGS:
            self._waiting = deque(c for c in self._waiting if command_name(c) != name)  # the newest value counts
        elif len(self._waiting) >= MAX_WAITING:
            raise EngineError(f"the engine has not taken a command for a while ({len(self._waiting)} are waiting; "
                              f"its pipe is full): it may be hung; {name} not sent")
        self._waiting.append(command)

    @property
    def waiting(self) -> int:
        """Commands held here until the engine's pipe has room."""
        return len(self._waiting)

    def _writable(self) -> bool:
        return bool(select.select([], [self._commands.fileno()], [], 0)[1])

    def _flush(self) -> None:
        """Send the waiting commands, oldest first, while the pipe takes them; they keep waiting for a restarted
        engine when this one has died."""
        while self._waiting and self._commands is not None and self.alive and self._writable():
            try:
                self._commands.send(self._waiting[0])
            except (OSError, ValueError):
                return
            self._waiting.popleft()

    def poll(self) -> EngineState:
        """The newest state the engine published, with the process facts filled in; but while it runs, the first
        state after a jump (rewind, reset, back, rollback: a new branch) comes before any that follow it, so a caller
        that polls slowly still sees the iteration the journey jumped to (the rest comes with the next poll)."""
        if self._waiting:
            self._flush()
        alive = self.alive  # checked before draining: once dead, everything it sent is already in the pipe
        if self._states is not None:
            try:
                while self._states.poll():
                    state, branch = self._states.recv(), self._state.branch
                    self._state = state
                    if alive and state.branch != branch:
                        break
            except (EOFError, OSError):
                self._states.close()
                self._states = None
        exitcode = self._process.exitcode if self._process is not None else None
        state = self._state.replace(alive=alive, pid=self.pid, exitcode=exitcode)
        if self._process is not None and not alive and state.status not in ("stopped", "crashed", "refused"):
            how = f"was killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 \
                else f"died (exit code {exitcode})"
            if exitcode == -signal.SIGBUS:  # a write to memory that is not there: /dev/shm ran out under a mapping
                how += " (SIGBUS: shared memory in /dev/shm may be full)"
            state = state.replace(status="crashed", error=f"the engine process {how}")
        return state

    def wait_for(self, predicate: Callable[[EngineState], bool], timeout: float = 60.0) -> EngineState:
        """Poll until `predicate(state)` holds; raises EngineError if the process dies first, TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.poll()
            if predicate(state):
                return state
            if not state.alive and state.status != "starting":
                raise EngineError(f"the engine process is not running: {state.error or state.status}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"engine state did not get there in {timeout:g} s (last: iteration "
                                   f"{state.iteration}, status {state.status})")
            time.sleep(0.02)

    def stop(self, timeout: float = 30.0, kill_timeout: float = KILL_SECONDS) -> int | None:
        """Ask for a clean shutdown (last snapshot, pending writes finished); after `timeout` s SIGTERM, then SIGKILL.
        EngineUnkillable when the process outlives SIGKILL by `kill_timeout` s (or did so before)."""
        if self._process is None:
            return None
        if self.unkillable:
            raise EngineUnkillable(self.unkillable)
        if self.alive:
            try:
                self.send("shutdown")
            except EngineError:
                pass
            deadline = time.monotonic() + timeout
            while self._process.is_alive() and time.monotonic() < deadline:
                self._flush()  # commands waiting for room in the pipe go first, the shutdown behind them
                self._process.join(0.05)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(TERMINATE_SECONDS)
            if self._process.is_alive():
                self.kill(kill_timeout)
        self.poll()
        self._close_pipes()
        return self._process.exitcode

    def kill(self, timeout: float = KILL_SECONDS) -> None:
        """SIGKILL, no questions asked (a hung engine; also how the tests simulate a power cut), waiting at most
        `timeout` s for the process to go; EngineUnkillable if it is still there."""
        if self.unkillable:
            raise EngineUnkillable(self.unkillable)
        if not self.alive:
            return
        pid = self._process.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._process.join(timeout)
        if self._process.is_alive():
            self.unkillable = (f"the engine process {pid} is still there {timeout:g} s after SIGKILL: it is stuck in "
                               f"the kernel (state {_process_state(pid)}), most likely in the GPU driver, and holds "
                               "the run folder; the installation stops so the service can restart it (reboot if this "
                               "repeats)")
            # multiprocessing joins every child it started, without a timeout, when this interpreter exits: let go
            # of this one, or the installation could never exit either (the kernel reaps it when it dies)
            multiprocessing.process._children.discard(self._process)
            raise EngineUnkillable(self.unkillable)

    def restart(self, cause: str | None = None) -> None:
        """Stop the engine if it still runs, then start a new one; it resumes from the newest snapshot and records
        why the previous one ended: `cause` when the caller knows it (it killed a hung engine), else the crash's."""
        state = self.poll()
        if cause is None and state.status == "crashed":
            cause = state.error
        self.stop()
        self.start(previous_death=cause)

    def _close_pipes(self) -> None:
        for conn in (self._commands, self._states):
            if conn is not None:
                conn.close()
        self._commands = self._states = None


def _process_state(pid: int) -> str:
    """The kernel's one-letter state of a process (D: uninterruptible sleep), or "?"."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


class _Publisher:
    """Sends states from a thread, keeping only the newest, so a slow reader never blocks the training loop."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._ready = threading.Condition()
        self._latest: EngineState | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="state-publisher", daemon=True)
        self._thread.start()

    def publish(self, state: EngineState) -> None:
        with self._ready:
            self._latest = state
            self._ready.notify()

    def close(self, timeout: float = 5.0) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._latest is not None or self._closed)
                state, self._latest = self._latest, None
            if state is None:
                return  # closed and nothing left to send
            try:
                self._conn.send(state)
            except OSError:
                return  # the caller is gone


@contextlib.contextmanager
def _group_signals_ignored() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP ignored while a child is started (from the main thread only, where Python allows
    changing handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in GROUP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_terminate_requested = threading.Event()
_caller_gone = threading.Event()
CALLER_GONE = "the display process went away without stopping the engine (killed or crashed)"


def _receiver(conn: Connection) -> Callable[[float], list[Any]]:
    def receive(timeout: float) -> list[Any]:
        if _terminate_requested.is_set():
            return [Command("shutdown")]
        try:
            if not conn.poll(timeout):
                return []
            received = []
            while conn.poll():
                received.append(conn.recv())
            return received
        except (EOFError, OSError):
            _caller_gone.set()
            return [Command("shutdown")]
    return receive


def _serve(spec: _Spec, commands: Connection, states: Connection) -> None:
    """The engine process's main function."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and hang-up in the terminal are for the caller
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: _terminate_requested.set())  # stop cleanly, with a final snapshot
    publisher = _Publisher(states)
    engine = None
    # fewer, larger reserved blocks, grown in place: the frame batches and training shapes vary (before CUDA starts)
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    try:
        try:
            device = resolve_device(spec.config.device)
            torch.set_num_threads(engine_threads(spec.config.threads, cuda=device.type == "cuda"))
            gan = load_gan(spec.checkpoint, resolution=spec.resolution, device=device, use_ema=spec.use_ema,
                           require_discriminator=True)
            engine = Engine(gan, spec.config, spec.run_dir, spec.between_steps, spec.previous_death, spec.drawer)
        except EngineRefused:
            raise
        except DeviceUnavailable as error:  # checked at start, so the GPU was lost since: retry with back-off
            raise EngineError(f"{error} (the GPU was lost: a driver reset or a fault)") from None
        except (CheckpointError, ConfigError) as error:  # the same file and settings will fail the same way
            raise EngineRefused(str(error)) from None
        engine.run(receive=_receiver(commands), publish=publisher.publish)
        engine.close(cause=CALLER_GONE if _caller_gone.is_set() else None)
        publisher.publish(engine.state())
    except BaseException as error:
        if isinstance(error, EngineError):
            print(f"uncanny engine: {error}", file=sys.stderr)
            message = str(error)
        else:
            traceback.print_exc()  # a bug: the operator's log needs the whole story
            message = f"{type(error).__name__}: {first_line(error)}"
        state = engine.state() if engine is not None else EngineState()
        publisher.publish(state.replace(status="refused" if isinstance(error, EngineRefused) else "crashed",
                                        error=message))
        if engine is not None:
            try:
                engine.record_crash(message)
                engine.close(snapshot=False)  # finish the complete snapshots already queued
            except Exception:
                traceback.print_exc()
        raise SystemExit(1) from None
    finally:
        publisher.close()
