"""The kubelet's streaming protocols: SPDY/3.1 (spdy.py), the WebSocket channel protocols
(channels.py), exec/attach over either (remotecommand.py), port-forward over either
(portforward.py), and taking over an aiohttp connection after a 101 (hijack.py)."""
