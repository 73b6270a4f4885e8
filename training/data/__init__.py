"""LDO data: the v1 schema and validator, the synthetic generator, and the loader into PostgreSQL + S3."""
