"""``replay``'s spool: the calls waiting for their text's fate, kept on the scratch store's disk, not in RAM.

A replayed call is printed once it is settled (no text, or its text sent or cancelled), in the order the
calls finished. In a capture without timing every event has the same arrival time, so no text ever comes
due before the end of the file and every later call waits behind the first text: a month would wait in
memory. ``Spool`` keeps the waiting entries (any picklable object: they never leave this process) in a
table of the scratch store, in order, and hands them back in batches.
"""

from __future__ import annotations

import pickle
from typing import Any

from textbackd.store.db import Store


class Spool:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.write("CREATE TABLE IF NOT EXISTS replay_spool (seq INTEGER PRIMARY KEY, item BLOB NOT NULL)")
        self.size = 0

    def push(self, item: Any) -> int:
        """Append ``item``; its sequence number (for ``replace``)."""
        self.size += 1
        cur = self.store.write("INSERT INTO replay_spool (item) VALUES (?)", (pickle.dumps(item, 5),))
        return int(cur.lastrowid)

    def replace(self, seq: int, item: Any) -> None:
        self.store.write("UPDATE replay_spool SET item = ? WHERE seq = ?", (pickle.dumps(item, 5), seq))

    def take(self, n: int) -> list[Any]:
        """The oldest ``n`` items, removed from the spool."""
        rows = self.store.db.execute("SELECT seq, item FROM replay_spool ORDER BY seq LIMIT ?", (n,)).fetchall()
        if rows:
            self.store.write("DELETE FROM replay_spool WHERE seq <= ?", (rows[-1][0],))
        self.size -= len(rows)
        return [pickle.loads(r[1]) for r in rows]
