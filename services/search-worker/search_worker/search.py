"""Running one search and storing its results, idempotently."""

from __future__ import annotations

import uuid

from pysvc_common.db import Connection

MAX_RESULTS = 10

SEARCH_SQL = """
SELECT d.id, ts_rank(d.tsv, q) AS rank
FROM documents d, plainto_tsquery('english', %s) q
WHERE d.tsv @@ q
ORDER BY rank DESC, d.id
LIMIT %s
"""


def answer(conn: Connection, search_id: uuid.UUID, query: str) -> bool:
    """Store the results of one search in one transaction.

    Returns False when the search was already answered (a redelivery): the
    first stored answer stands, so a search never gets two different ones."""
    with conn.transaction():
        row = conn.execute(
            "SELECT status FROM searches WHERE id = %s FOR UPDATE", (search_id,)
        ).fetchone()
        if row is None or row[0] == "done":
            return False
        hits = conn.execute(SEARCH_SQL, (query, MAX_RESULTS)).fetchall()
        for position, (document_id, rank) in enumerate(hits):
            conn.execute(
                "INSERT INTO search_results (search_id, document_id, rank, position) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (search_id, document_id, rank, position),
            )
        conn.execute(
            "UPDATE searches SET status = 'done', completed_at = now() WHERE id = %s",
            (search_id,),
        )
    return True
