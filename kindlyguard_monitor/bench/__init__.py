"""kgmon bench: measures the ring end to end against the bare-C floor."""
