"""The client side: the Python SDK (`client.sdk.VenueClient`), the bots, the demos and the
operator's admin client. Everything here talks to a venue over its websocket protocol only.
"""
