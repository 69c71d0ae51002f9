"""Control: one action vocabulary for keys, OSC and the gallery director, one inbox the display loop drains.

    actions.py   the table of actions (names, OSC addresses, arguments, ranges) and the validated `Action`
    inbox.py     the thread-safe inbox: continuous controls coalesced, discrete ones in order, bounded
    keys.py      the key map as data
    osc.py       the OSC server (python-osc), its datagram guard, allowlist and feedback
    oscquery.py  the OSCQuery HTTP server, generated from the action table
    state.py     ControlState: what the live loop publishes for queries and feedback
    service.py   ControlService: the inbox and the servers the [osc] table asks for, for the live loop
    director.py  the gallery director ([gallery] table): cycles the journey and keeps opening hours, by actions
    midi.py      MIDI controllers ([midi] table, optional extra): CC / notes -> actions, MIDI learn, LED feedback
    packets.py   the strict datagram check run before python-osc parses anything
    docs.py      docs/osc.md, the Open Stage Control session and the TouchOSC layout, generated from the action table
    touchosc.py  the TouchOSC layout (docs/uncanny.tosc): zlib-compressed <lexml> XML
    cli.py       `run_installation.py osc ADDRESS [ARGS...]`
"""
