"""Comparison ingest: page text and JSON sources, parsed to ComparisonData and upserted by slug."""
