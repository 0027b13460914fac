"""Storage: the schema (models), engines and migrations (db)."""
