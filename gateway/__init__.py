"""The process around the engine: the `venue` command line now; the websocket server later.

The only package that touches clocks, files and the network.
"""
