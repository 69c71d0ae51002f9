"""The running installation, in the two processes it spans.

- `run.py`: `run()` for a window or headless, and `live_show()`, where every collaborator of the loop is built and
  passed in (and closed in order): among them the engine process's frame drawer (engine/drawer.py: `FrameDrawer`,
  which draws the latent walk beside training into the shared-memory frame channel; `WalkSettings`, what the
  display tells it to draw); the run folder held for the run; `RunReport`, how a run ended.
- `loop.py`: `LiveLoop`, the one render loop for both surfaces (display/surface.py), once per refresh: actions in,
  frames to the screen, one ControlState snapshot out (OSC, OSCQuery, HUD, status.json read it), outputs fed.
- `stage.py`: `Stage`, what display actions act on (their effects are registered beside their Specs in
  control/actions.py); engine actions go down the command pipe from here.
- `picture.py` and `motion.py`: frames from the engine's ring, played smoothly at their moments.
- `outputs.py`: `Outputs`, the sinks the loop feeds (the headless video, recordings, NDI, streams), guarded.
- `supervisor.py`: `EngineSupervisor`, which restarts a dead or hung (silent heartbeat) engine with a back-off
  and stops on a refusal.
- `hud.py`: the HUD's text and `Notices`, the lines said on screen; `status.py`: status.json and thumbnails;
  `notify.py`: systemd's READY/WATCHDOG/STOPPING; `logfile.py`: the rotating log.

Data flows one way: controls -> actions -> engine commands -> engine -> frames -> loop -> outputs; state flows
back as one snapshot per refresh.
"""
