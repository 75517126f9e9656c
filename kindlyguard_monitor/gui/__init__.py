"""The desktop app (PySide6): tray icon, live threat feed, latency histogram, notifications.

Transport logic stays out of here: the reader thread runs kindlyguard_monitor.transport.manager
and only emits signals; everything else runs on the GUI thread.
"""
