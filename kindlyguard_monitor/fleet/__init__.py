"""The fleet: every workstation's threats in one NATS JetStream stream (issue 16).

- subjects.py   the stream, subject and message-id names (one place)
- message.py    a threat or a gap as a stream message (JSON body + headers), and back
- outbox.py     the local history read as an outbox: rows after the cursor, the cursor table
- connect.py    connecting to NATS (URLs, TLS, creds/NKey files) and creating the stream
- forwarder.py  `kgmon forward`: history rows -> the stream, exactly once, in order per host
- publish.py    how the forwarder publishes in order: fast-ingest batches, or one by one
- viewer.py     `kgmon tail --fleet`: a durable consumer per viewer

nats-py is imported only by connect.py, forwarder.py and viewer.py, so the rest of
the app (and `kgmon doctor`'s forwarding line) works without it.
"""
