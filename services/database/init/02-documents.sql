-- Seed documents the search worker searches over.
INSERT INTO documents (title, body) VALUES
    ('Multi-stage builds', 'A builder stage installs dependencies; the runtime stage copies only the virtual environment.'),
    ('BuildKit cache mounts', 'A cache mount keeps the package cache between builds without putting it in a layer.'),
    ('Healthchecks that fail', 'A healthcheck must exit non-zero when the service is down, or depends_on conditions mean nothing.'),
    ('KRaft mode', 'Kafka without ZooKeeper: the brokers run the metadata quorum themselves.'),
    ('PostgreSQL full-text search', 'tsvector columns and GIN indexes rank documents against a plainto_tsquery.'),
    ('Graceful shutdown', 'On SIGTERM a worker finishes the current message, commits its offset and exits.'),
    ('Non-root containers', 'Run the service as a numeric user so the runtime cannot write to the application code.'),
    ('Lock files with hashes', 'Pinned versions and hashes make installs reproducible and tamper-evident.'),
    ('TLS-inspecting proxies', 'A corporate proxy re-signs HTTPS; the CA bundle is mounted only while packages install.'),
    ('At-least-once delivery', 'Offsets are committed after results are stored, and redelivered messages are ignored.');
