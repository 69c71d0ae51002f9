"""Exhibition videos made offline from a run's snapshots, never from the live clock.

- `videos.py`: `export_loop` (a frame-exact seamless loop of one snapshot) and `export_film` (the journey from
  iteration 0 to the newest snapshot), drawn offscreen by the screen's own Presenter and encoded by recording/.
- `cli.py`: the `loop` and `film` commands.
- `background.py`: `LoopExports`, `loop` run as a low-priority child for /uncanny/record/loop during the show.
"""
