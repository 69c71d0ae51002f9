"""An X server with several monitors, for tests of monitor choice and of windows on several outputs.

Xvfb cannot do it: it has one RandR output per X screen, and GLFW counts RandR outputs (a second `-screen` is a
second display, `:N.1`, which GLFW cannot reach from `:N`; `+xinerama` does not change what RandR reports). TigerVNC's
Xvnc can: it grows RandR outputs (VNC-0, VNC-1, ...) when a VNC client asks for a desktop of several screens
(RFB's ExtendedDesktopSize, SetDesktopSize message). `several_monitors` starts one with no TCP port (the VNC side on
a Unix socket only), asks for the layout as a VNC client would, and returns its DISPLAY. GLX works on it (llvmpipe).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from pathlib import Path

EXTENDED_DESKTOP_SIZE = -308  # RFB pseudo-encoding: the client may resize the desktop into several screens
SET_DESKTOP_SIZE = 251  # RFB client message


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("Xvnc closed the RFB connection")
        data += chunk
    return data


def ask_for_screens(rfb_socket: Path, screens: list[tuple[int, int, int, int]]) -> None:
    """As a VNC client on `rfb_socket` (security None): lay the desktop out as `screens`, each (x, y, width,
    height), then wait for the server's answer."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(rfb_socket))
        _receive(sock, 12)  # "RFB 003.008\n"
        sock.sendall(b"RFB 003.008\n")
        types = _receive(sock, _receive(sock, 1)[0])
        assert 1 in types, f"Xvnc offers security types {list(types)}, not None"
        sock.sendall(bytes([1]))
        assert struct.unpack(">I", _receive(sock, 4)) == (0,), "Xvnc refused the connection"
        sock.sendall(bytes([1]))  # ClientInit: share the desktop
        _receive(sock, 20)  # ServerInit: size and pixel format ...
        _receive(sock, struct.unpack(">I", _receive(sock, 4))[0])  # ... and the desktop's name
        sock.sendall(struct.pack(">BBHi", 2, 0, 1, EXTENDED_DESKTOP_SIZE))  # SetEncodings
        width = max(x + w for x, _, w, _ in screens)
        height = max(y + h for _, y, _, h in screens)
        message = struct.pack(">BBHHBB", SET_DESKTOP_SIZE, 0, width, height, len(screens), 0)
        for number, (x, y, w, h) in enumerate(screens, 1):
            message += struct.pack(">IHHHHI", number, x, y, w, h, 0)
        sock.sendall(message + struct.pack(">BBHHHH", 3, 1, 0, 0, width, height))  # and an update request
        _receive(sock, 4)  # the update that carries the answer: the layout is in place


def start_several_monitors(folder: Path, screens: list[tuple[int, int, int, int]]
                           ) -> tuple[subprocess.Popen, str]:
    """An Xvnc with `screens` as its monitors (the first one primary); returns the process and its DISPLAY."""
    rfb_socket = folder / "rfb.socket"
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvnc", "-displayfd", str(write_end), "-geometry", "1024x768", "-depth", "24",
                               "-SecurityTypes", "None", "-rfbport", "-1", "-rfbunixpath", str(rfb_socket),
                               "-AcceptSetDesktopSize=1", "-noreset", "-nolisten", "tcp"],
                              pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    reply = b""
    while not reply.endswith(b"\n") and (chunk := os.read(read_end, 16)):
        reply += chunk
    os.close(read_end)
    if not reply.strip():
        server.kill()
        raise RuntimeError("Xvnc exited without reporting a display number")
    deadline = time.monotonic() + 30
    while not rfb_socket.exists():
        assert time.monotonic() < deadline, "Xvnc made no RFB socket"
        time.sleep(0.05)
    ask_for_screens(rfb_socket, screens)
    return server, f":{reply.decode().strip()}"
