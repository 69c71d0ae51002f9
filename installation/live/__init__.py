"""The running installation, in the two processes it spans.

- `installation.py` (display process): `Installation`, ticked once per screen refresh: the newest frame to the
  presenter, controls to the engine, the HUD. It builds the engine process's frame drawer (engine/drawer.py:
  `FrameDrawer`, which draws the latent walk beside training into the shared-memory frame channel; `WalkSettings`,
  what the display tells it to draw).
- `supervisor.py`: `EngineSupervisor`, which restarts a dead or hung (silent heartbeat) engine with a back-off
  and stops on a refusal.
- `notify.py`: `Notifier`, sd_notify READY/WATCHDOG/STOPPING for systemd, from the loops in run.py.
- `hud.py`: the HUD's text.
- `run.py`: `run_window` / `run_headless` and the run folder they hold; `RunReport`, how a run ended.

Data flows one way: controls -> engine commands -> engine -> frames -> display -> video; state flows back on its
own channel (engine state -> HUD).
"""
