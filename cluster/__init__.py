"""Running the venue's external services on loopback: NATS JetStream nodes and PostgreSQL, each on
its own ports and in its own directory, for the tests and for `venue cluster` (a whole local
cluster: 3 NATS nodes, PostgreSQL, core, standby and gateways).
"""
