"""Built-in demo: a realistic stream of made-up threats, so the monitor can be tried without Shield."""
