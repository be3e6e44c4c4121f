"""The project's PostgreSQL backend (``ENGINE = "config.postgresql"``): Django's, with a health
check that needs no round trip. See ``config/postgresql/base.py``."""
