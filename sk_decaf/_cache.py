"""A persistent, multi-process activation cache in one SQLite file (WAL mode).

One row per (configuration, image, layer): the configuration digest covers everything that changes the
activations (backbone, weights digest, preprocessing, pooling, precision), the image key is a digest of the
image's content, and the value is the float32 vector with a CRC32. SQLite transactions make every write
atomic, so a process killed mid-write leaves no entry that reads back wrong; a CRC or length mismatch is
treated as a miss and recomputed. WAL mode lets many readers and one writer at a time share the file
(GridSearchCV with ``n_jobs``, several notebooks); writers wait for each other (``busy_timeout``).
It must live on a local file system: SQLite's WAL mode does not work over NFS.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import zlib

import numpy as np

__all__ = ["ActivationCache", "CacheError"]

_FORMAT = "sk_decaf.activations"
_VERSION = "1"
_CHUNK = 400  # keys per SELECT, below SQLite's default limit of 999 host parameters


class CacheError(ValueError):
    """The cache file is corrupt, foreign, or from an incompatible version."""


class ActivationCache:
    """Store and look up per-image activations.

    Parameters
    ----------
    path : str or path-like
        The SQLite file; created with its folder when missing.
    max_bytes : int, default=None
        Evict least-recently-used vectors once the stored vectors exceed this size.
    timeout : float, default=120
        Seconds a writer waits for another process's transaction.
    """

    def __init__(self, path, max_bytes=None, timeout=120.0):
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._conn = None

    # -- connection --------------------------------------------------------------------------------
    def _connect(self):
        if self._conn is not None:
            return self._conn
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                self._create(conn)
            else:
                meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
                if meta.get("format") != _FORMAT:
                    raise CacheError(
                        f"{self.path!r} is an SQLite database but not an sk_decaf activation cache; "
                        "choose another cache path (the file was left untouched)."
                    )
                if meta.get("version") != _VERSION:
                    raise CacheError(
                        f"{self.path!r} was written by an incompatible sk_decaf cache format "
                        f"(version {meta.get('version')}, expected {_VERSION}); delete it or use clear_cache()."
                    )
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"Cannot use {self.path!r} as an activation cache: {exc}. The file is corrupt or not a "
                "cache; delete it (its features will be recomputed) or choose another path."
            ) from None
        self._conn = conn
        return conn

    @staticmethod
    def _create(conn):
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS activations (config TEXT, image TEXT, layer TEXT, data BLOB, "
                "crc INTEGER, used REAL, PRIMARY KEY (config, image, layer)) WITHOUT ROWID"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS activations_used ON activations (used)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS configs (config TEXT PRIMARY KEY, description TEXT, "
                "hits INTEGER DEFAULT 0, computed INTEGER DEFAULT 0)"
            )
            conn.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                             [("format", _FORMAT), ("version", _VERSION)])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        self._connect()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reads -------------------------------------------------------------------------------------
    def get(self, config, keys, dims):
        """Look up ``keys`` for the layers in ``dims`` (``{layer: dimension}``).

        Returns ``{key: {layer: vector}}`` holding only complete, intact entries; a corrupt vector is
        dropped (and recomputed by the caller).
        """
        conn = self._connect()
        layers = list(dims)
        found = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start:start + _CHUNK]
            q = (f"SELECT image, layer, data, crc FROM activations WHERE config=? "
                 f"AND image IN ({','.join('?' * len(chunk))}) AND layer IN ({','.join('?' * len(layers))})")
            for image, layer, data, crc in conn.execute(q, [config, *chunk, *layers]):
                if len(data) != 4 * dims[layer] or zlib.crc32(data) != crc:
                    continue  # torn or foreign vector: never return wrong features
                found.setdefault(image, {})[layer] = np.frombuffer(data, dtype=np.float32)
        complete = {k: v for k, v in found.items() if len(v) == len(layers)}
        if complete and self.max_bytes is not None:
            self._touch(conn, config, list(complete))
        return complete

    def _touch(self, conn, config, keys):
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start:start + _CHUNK]
                conn.execute(f"UPDATE activations SET used=? WHERE config=? AND image IN ({','.join('?' * len(chunk))})",
                             [now, config, *chunk])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writes ------------------------------------------------------------------------------------
    def put(self, config, rows, description=None):
        """Store ``rows`` of ``(key, layer, vector)`` in one atomic transaction."""
        conn = self._connect()
        now = time.time()
        payload = []
        for key, layer, vec in rows:
            data = np.ascontiguousarray(vec, dtype=np.float32).tobytes()
            payload.append((config, key, layer, data, zlib.crc32(data), now))
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO activations VALUES (?, ?, ?, ?, ?, ?)", payload)
            if description is not None:
                conn.execute("INSERT OR IGNORE INTO configs (config, description) VALUES (?, ?)",
                             (config, json.dumps(description, sort_keys=True, default=str)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def record(self, config, hits, computed, description=None):
        """Add to the per-configuration counters of cache hits and images that went through the network."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT OR IGNORE INTO configs (config, description) VALUES (?, ?)",
                         (config, json.dumps(description, sort_keys=True, default=str)))
            conn.execute("UPDATE configs SET hits = hits + ?, computed = computed + ? WHERE config=?",
                         (int(hits), int(computed), config))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def evict(self):
        """Drop least-recently-used vectors until the stored bytes fit ``max_bytes``."""
        if self.max_bytes is None:
            return 0
        conn = self._connect()
        total = conn.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM activations").fetchone()[0]
        removed = 0
        while total > self.max_bytes:
            rows = conn.execute("SELECT config, image, layer, LENGTH(data) FROM activations "
                                "ORDER BY used LIMIT 256").fetchall()
            if not rows:
                break
            drop = []
            for config, image, layer, size in rows:
                drop.append((config, image, layer))
                total -= size
                if total <= self.max_bytes:
                    break
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM activations WHERE config=? AND image=? AND layer=?", drop)
            conn.execute("COMMIT")
            removed += len(drop)
        return removed

    def clear(self, config=None):
        """Delete every vector (or those of one configuration) and reset the counters."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        if config is None:
            conn.execute("DELETE FROM activations")
            conn.execute("DELETE FROM configs")
        else:
            conn.execute("DELETE FROM activations WHERE config=?", (config,))
            conn.execute("DELETE FROM configs WHERE config=?", (config,))
        conn.execute("COMMIT")
        if config is None:
            conn.execute("VACUUM")

    def info(self, config=None):
        """Counts for one configuration (or all): entries, images, bytes, hits, computed."""
        conn = self._connect()
        where, args = ("WHERE config=?", (config,)) if config is not None else ("", ())
        entries, images, size = conn.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT image), COALESCE(SUM(LENGTH(data)), 0) FROM activations {where}",
            args).fetchone()
        hits, computed = conn.execute(
            f"SELECT COALESCE(SUM(hits), 0), COALESCE(SUM(computed), 0) FROM configs {where}", args).fetchone()
        return {"entries": entries, "images": images, "bytes": size, "hits": hits, "computed": computed}
