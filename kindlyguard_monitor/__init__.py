"""KindlyGuard Monitor: shows the threats KindlyGuard Shield finds, the moment it finds them."""

__version__ = "0.1.0"
