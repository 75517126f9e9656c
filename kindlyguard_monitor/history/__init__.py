"""The threat history: every threat delivered, kept on disk, searchable and exportable.

- kindlyguard_monitor.history.store: HistoryStore, the writer thread the app feeds;
- kindlyguard_monitor.history.query: Filter, search / count / recent / gaps / iterate;
- kindlyguard_monitor.history.export: CSV and JSON export of a whole search;
- kindlyguard_monitor.history.db: where the file lives, opening, checking, moving a bad file aside;
- kindlyguard_monitor.history.schema: the tables and their numbered migrations;
- kindlyguard_monitor.history.records: keys, rows, StoredThreat and Gap.

docs/history.md describes the design and its figures.
"""
