"""Optuna storages: opening any URL (journal file, SQLite, PostgreSQL), checking and
repairing journal files."""
