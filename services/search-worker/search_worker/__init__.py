"""The search worker: consumes search requests, answers them from PostgreSQL."""
