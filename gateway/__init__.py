"""The gateway role: websocket sessions, wire decoding, auth, rate limits, and the private and
public streams (server, transport, wire, auth, limits, market data, reports, order history).

It turns frames into engine commands for the core and the core's outcomes into answers and
pushes; it keeps no state of record of its own.
"""
