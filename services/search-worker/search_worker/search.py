"""Answering searches and storing their results, idempotently, a batch at a time."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from pysvc_common.db import Connection

MAX_RESULTS = 10

# One statement, so one transaction: lock the batch's unanswered searches
# (in id order, so two workers never deadlock), run each one's full-text
# search, store the hits and mark the searches done. A search another worker
# answered meanwhile is skipped after its lock is released, so a redelivered
# message never gives a search a second answer. The update reads the stored
# hits (aggregated, so all of them first): `completed_at` is stamped after
# the batch's searches ran, just before the commit, not when it began.
ANSWER_SQL = """
WITH todo AS (
    SELECT id, query FROM searches
    WHERE id = ANY(%(ids)s) AND status <> 'done'
    ORDER BY id
    FOR UPDATE
), hits AS (
    INSERT INTO search_results (search_id, document_id, rank, position)
    SELECT t.id, h.id, h.rank, h.position
    FROM todo t CROSS JOIN LATERAL (
        SELECT d.id, ts_rank(d.tsv, q) AS rank,
               (row_number() OVER (ORDER BY ts_rank(d.tsv, q) DESC, d.id) - 1)::int AS position
        FROM documents d, plainto_tsquery('english', t.query) q
        WHERE d.tsv @@ q
        ORDER BY rank DESC, d.id
        LIMIT %(limit)s
    ) h
    ON CONFLICT DO NOTHING
    RETURNING search_id
), stored AS (
    SELECT search_id FROM hits GROUP BY search_id
)
UPDATE searches s SET status = 'done', completed_at = clock_timestamp()
FROM todo LEFT JOIN stored ON stored.search_id = todo.id
WHERE s.id = todo.id
RETURNING s.id
"""


def answer(conn: Connection, search_ids: Sequence[uuid.UUID]) -> int:
    """Answers every search of the batch that is not answered yet; returns
    how many it answered (the others were redeliveries or unknown ids)."""
    if not search_ids:
        return 0
    rows = conn.execute(ANSWER_SQL, {"ids": list(search_ids), "limit": MAX_RESULTS}).fetchall()
    return len(rows)
