"""Historical order flow replayed through the engine and checked against the exchange's book."""
