"""The kgmon command line."""
