"""The threat history: every threat delivered, kept on disk, searchable and exportable.

- app.history.store: HistoryStore, the writer thread the app feeds;
- app.history.query: Filter, search / count / recent / gaps / iterate;
- app.history.export: CSV and JSON export of a whole search;
- app.history.db: where the file lives, opening, checking, moving a bad file aside;
- app.history.schema: the tables and their numbered migrations;
- app.history.records: keys, rows, StoredThreat and Gap.

docs/history.md describes the design and its figures.
"""
