"""The users service: sign-up, profiles and account CRUD on SQL (PostgreSQL or a SQLite file)."""
