"""Where state is written: PostgreSQL (embedded or `DATABASE_URL`), models and sessions."""
