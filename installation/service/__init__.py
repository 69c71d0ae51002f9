"""Running the installation as a systemd service: `unit.py` writes the unit, `cli.py` adds `service install` and
`service status` to the command line."""
