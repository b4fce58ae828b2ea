"""A persistent, multi-process activation cache in one SQLite file (WAL mode).

One row per (configuration, image, layer): the configuration digest covers everything that changes the
activations (backbone, weights digest, preprocessing, pooling, precision), the image key is a digest of the
image's content, and the value is the float32 vector with a CRC32. SQLite transactions make every write
atomic, so a process killed mid-write leaves no entry that reads back wrong; a CRC or length mismatch is
treated as a miss and recomputed. WAL mode lets many readers and one writer at a time share the file
(GridSearchCV with ``n_jobs``, several notebooks); writers wait for each other (``busy_timeout``).
It must live on a local file system: SQLite's WAL mode does not work over NFS.

A cache whose file or folder cannot be written (a shared, read-only copy) is opened read-only: hits are
served, nothing is stored, and one warning says so. A file that is not an sk_decaf cache is never modified.
Every SQLite failure surfaces as a :class:`CacheError` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["ActivationCache", "CacheError"]

_FORMAT = "sk_decaf.activations"
_VERSION = "1"
_CHUNK = 400  # keys per SELECT, below SQLite's default limit of 999 host parameters
#: SQLITE_BUSY and SQLITE_LOCKED (named in the sqlite3 module from Python 3.11 on only).
_BUSY_CODES = (5, 6)


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether an SQLite error is a lock held by another connection (SQLITE_BUSY or SQLITE_LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)


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

    def __init__(self, path: str | os.PathLike[str], max_bytes: int | None = None, timeout: float = 120.0) -> None:
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.readonly = False
        self._conn: sqlite3.Connection | None = None

    # -- connection --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn any SQLite failure into a :class:`CacheError` that names the file and what was attempted."""
        try:
            yield
        except CacheError:
            raise
        except sqlite3.Error as exc:
            raise CacheError(
                f"Cannot {action} the activation cache {self.path!r}: {type(exc).__name__}: {exc}. Check that "
                "the file is an sk_decaf cache on a local file system, or choose another cache path."
            ) from None

    def _writable(self) -> bool:
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.exists(self.path):
            return True  # created below (makedirs fails clearly where it cannot)
        return os.access(self.path, os.W_OK) and os.access(folder, os.W_OK)

    def _open_readonly(self) -> sqlite3.Connection:
        """Read a cache that cannot be written.

        Plain read-only, or immutable when even the WAL index cannot be created next to it.
        """
        uri = "file:" + os.path.abspath(self.path)
        for suffix in ("?mode=ro", "?mode=ro&immutable=1"):
            conn = sqlite3.connect(uri + suffix, uri=True, timeout=self.timeout, isolation_level=None)
            try:
                conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
                return conn
            except sqlite3.OperationalError:
                conn.close()
        raise CacheError(f"Cannot open the read-only activation cache {self.path!r}.")

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        # Two processes that open a new cache at the same moment may both ask for the WAL switch's exclusive
        # lock; SQLite then answers one of them "database is locked" at once (deadlock avoidance, no busy
        # wait). Opening is idempotent, so it is retried until ``timeout``.
        deadline, delay = time.monotonic() + self.timeout, 0.005
        while True:
            try:
                conn = self._open()
                break
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise self._unusable(exc) from None
                if time.monotonic() >= deadline:
                    raise CacheError(
                        f"The activation cache {self.path!r} stayed locked by another process for "
                        f"{self.timeout:g} s; try again, or raise the timeout."
                    ) from None
                time.sleep(delay)
                delay = min(2 * delay, 0.25)
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from None
        if self.readonly:
            warnings.warn(
                f"The activation cache {self.path!r} is read-only: cached activations are used, new ones are "
                "not stored.",
                UserWarning,
                stacklevel=4,
            )
        self._conn = conn
        return conn

    def _unusable(self, exc: Exception) -> CacheError:
        return CacheError(
            f"Cannot use {self.path!r} as an activation cache: {exc}. The file is corrupt or not a "
            "cache; delete it (its features will be recomputed) or choose another path."
        )

    def _open(self) -> sqlite3.Connection:
        """One attempt at opening (and, when empty, creating) the cache; the connection is closed on failure."""
        if self._writable():
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self.readonly = False
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        else:
            self.readonly = True
            conn = self._open_readonly()
        try:
            # Identify the file before changing anything in it: a foreign database is left as it was.
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                if self.readonly:
                    raise CacheError(f"{self.path!r} is empty and read-only: it cannot hold an activation cache.")
                conn.execute("PRAGMA journal_mode=WAL")
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
                if not self.readonly:
                    conn.execute("PRAGMA journal_mode=WAL")
            if not self.readonly:
                conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
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
            conn.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", [("format", _FORMAT), ("version", _VERSION)])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ActivationCache:
        self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------------------
    def get(self, config: str, keys: Iterable[str], dims: dict[str, int]) -> dict[str, dict[str, np.ndarray]]:
        """Look up ``keys`` for the layers in ``dims`` (``{layer: dimension}``).

        Returns ``{key: {layer: vector}}`` holding only complete, intact entries; a corrupt vector is
        dropped (and recomputed by the caller).
        """
        conn = self._connect()
        layers = list(dims)
        found: dict[str, dict[str, np.ndarray]] = {}
        unique = list(dict.fromkeys(keys))
        with self._errors("read"):
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                q = (
                    f"SELECT image, layer, data, crc FROM activations WHERE config=? "
                    f"AND image IN ({','.join('?' * len(chunk))}) AND layer IN ({','.join('?' * len(layers))})"
                )
                for image, layer, data, crc in conn.execute(q, [config, *chunk, *layers]):
                    if len(data) != 4 * dims[layer] or zlib.crc32(data) != crc:
                        continue  # torn or foreign vector: never return wrong features
                    found.setdefault(image, {})[layer] = np.frombuffer(data, dtype=np.float32)
        complete = {k: v for k, v in found.items() if len(v) == len(layers)}
        if complete and self.max_bytes is not None and not self.readonly:
            self._touch(conn, config, list(complete))
        return complete

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection, action: str) -> Iterator[None]:
        """One atomic write transaction; SQLite failures become :class:`CacheError`."""
        with self._errors(action):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _touch(self, conn: sqlite3.Connection, config: str, keys: Sequence[str]) -> None:
        now = time.time()
        with self._transaction(conn, "update"):
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    f"UPDATE activations SET used=? WHERE config=? AND image IN ({marks})", [now, config, *chunk]
                )

    # -- writes ------------------------------------------------------------------------------------
    def put(self, config: str, rows: Iterable[tuple[str, str, Any]], description: dict[str, Any] | None = None) -> None:
        """Store ``rows`` of ``(key, layer, vector)`` in one atomic transaction."""
        conn = self._connect()
        if self.readonly:
            return
        now = time.time()
        payload = []
        for key, layer, vec in rows:
            data = np.ascontiguousarray(vec, dtype=np.float32).tobytes()
            payload.append((config, key, layer, data, zlib.crc32(data), now))
        with self._transaction(conn, "write to"):
            conn.executemany("INSERT OR REPLACE INTO activations VALUES (?, ?, ?, ?, ?, ?)", payload)
            if description is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO configs (config, description) VALUES (?, ?)",
                    (config, json.dumps(description, sort_keys=True, default=str)),
                )

    def record(self, config: str, hits: int, computed: int, description: dict[str, Any] | None = None) -> None:
        """Add to the per-configuration counters of cache hits and images that went through the network."""
        conn = self._connect()
        if self.readonly:
            return  # counters are statistics: a read-only cache still serves its hits
        with self._transaction(conn, "write to"):
            conn.execute(
                "INSERT OR IGNORE INTO configs (config, description) VALUES (?, ?)",
                (config, json.dumps(description, sort_keys=True, default=str)),
            )
            conn.execute(
                "UPDATE configs SET hits = hits + ?, computed = computed + ? WHERE config=?",
                (int(hits), int(computed), config),
            )

    def evict(self) -> int:
        """Drop least-recently-used vectors until the stored bytes fit ``max_bytes``."""
        if self.max_bytes is None:
            return 0
        conn = self._connect()
        if self.readonly:
            return 0
        with self._errors("read"):
            total = conn.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM activations").fetchone()[0]
        removed = 0
        while total > self.max_bytes:
            with self._errors("read"):
                rows = conn.execute(
                    "SELECT config, image, layer, LENGTH(data) FROM activations ORDER BY used LIMIT 256"
                ).fetchall()
            if not rows:
                break
            drop = []
            for config, image, layer, size in rows:
                drop.append((config, image, layer))
                total -= size
                if total <= self.max_bytes:
                    break
            with self._transaction(conn, "evict from"):
                conn.executemany("DELETE FROM activations WHERE config=? AND image=? AND layer=?", drop)
            removed += len(drop)
        return removed

    def clear(self, config: str | None = None) -> None:
        """Delete every vector (or those of one configuration) and reset the counters."""
        conn = self._connect()
        if self.readonly:
            raise CacheError(f"The activation cache {self.path!r} is read-only; it cannot be cleared.")
        with self._transaction(conn, "clear"):
            if config is None:
                conn.execute("DELETE FROM activations")
                conn.execute("DELETE FROM configs")
            else:
                conn.execute("DELETE FROM activations WHERE config=?", (config,))
                conn.execute("DELETE FROM configs WHERE config=?", (config,))
        if config is None:
            with self._errors("compact"):
                conn.execute("VACUUM")

    def info(self, config: str | None = None) -> dict[str, int]:
        """Counts for one configuration (or all): entries, images, bytes, hits, computed."""
        conn = self._connect()
        where, args = ("WHERE config=?", (config,)) if config is not None else ("", ())
        with self._errors("read"):
            entries, images, size = conn.execute(
                f"SELECT COUNT(*), COUNT(DISTINCT image), COALESCE(SUM(LENGTH(data)), 0) FROM activations {where}", args
            ).fetchone()
            hits, computed = conn.execute(
                f"SELECT COALESCE(SUM(hits), 0), COALESCE(SUM(computed), 0) FROM configs {where}", args
            ).fetchone()
        return {"entries": entries, "images": images, "bytes": size, "hits": hits, "computed": computed}
