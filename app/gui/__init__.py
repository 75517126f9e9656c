"""The desktop app (PySide6): tray icon, live threat feed, latency histogram, notifications.

Transport logic stays out of here: the reader thread runs app.transport.manager
and only emits signals; everything else runs on the GUI thread.
"""
