"""Transports: where threats come from (shared memory or the Shield's WebSocket) and switching between them."""
