"""The shared-memory threat ring, format v2 (see docs/shm-ring-v2.md)."""
