"""Schema migrations of the station database.

``MIGRATIONS[i]`` is the SQL script that takes the schema from version ``i`` to version ``i + 1``; the
version is kept in ``PRAGMA user_version``. :class:`secure_cp.store.db.Database` applies every missing script
on open, each in its own transaction together with the new version number, so a power cut mid-migration
leaves the previous version intact and the migration runs again on the next start (DESIGN.md §3: "an upgrade
of the software keeps everything").

Rules for whoever appends a migration:

* Append only. Never edit or reorder a released script: stations in the field have already run it.
* No BEGIN/COMMIT/ROLLBACK in a script; the runner wraps it in one transaction.
* ``PRAGMA foreign_keys`` is a no-op inside a transaction. A migration that rebuilds a table (the
  12-step ALTER procedure of https://www.sqlite.org/lang_altertable.html) uses
  ``PRAGMA defer_foreign_keys=ON`` instead.
* A file whose ``user_version`` is higher than ``len(MIGRATIONS)`` was written by a newer secure-cp and is
  refused (``StoreCorrupt``) rather than misread.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

# Version 1: the tables of the store package itself.
_V1_CORE = """
-- Transaction-related CALLs waiting for delivery, in the order they must be sent (OCPP 1.6 §3.7,
-- OCPP 2.0.1 E04/E14: transaction messages are queued while offline and delivered in chronological order).
-- AUTOINCREMENT: a delivered (removed) seq is never handed out again, so a seq names one message forever.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    action          TEXT    NOT NULL,
    payload         TEXT    NOT NULL,            -- JSON, Decimal kept as exact text
    tx_key          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL    NOT NULL,
    next_attempt_at REAL,
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    last_error      TEXT
);
CREATE INDEX outbox_status_seq ON outbox (status, seq);
CREATE INDEX outbox_tx_key ON outbox (tx_key) WHERE tx_key IS NOT NULL;

-- Transactions known to this station, open and finished.
CREATE TABLE transactions (
    tx_key          TEXT    PRIMARY KEY,
    evse_id         INTEGER NOT NULL,
    connector_id    INTEGER NOT NULL,
    id_tag          TEXT    NOT NULL,
    started_at      TEXT    NOT NULL,            -- RFC 3339
    meter_start_wh  INTEGER NOT NULL,
    protocol        TEXT    NOT NULL,
    reservation_id  INTEGER,
    transaction_id  TEXT,                        -- the CSMS's id (1.6: integer as text)
    last_meter_wh   INTEGER,
    last_meter_at   TEXT,
    stopped_at      TEXT,
    meter_stop_wh   INTEGER,
    stop_reason     TEXT,
    stop_id_tag     TEXT,
    seq_no          INTEGER NOT NULL DEFAULT 0,
    extra           TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX transactions_transaction_id ON transactions (transaction_id) WHERE transaction_id IS NOT NULL;
CREATE INDEX transactions_open ON transactions (started_at) WHERE stopped_at IS NULL;
CREATE INDEX transactions_started_at ON transactions (started_at);

-- Small durable settings, grouped by namespace.
CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,                     -- JSON
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;

-- Authorization cache (OCPP 1.6 §3.5.1, OCPP 2.0.1 C10): idTag -> idTagInfo / idTokenInfo.
CREATE TABLE auth_cache (
    id_tag     TEXT    PRIMARY KEY,
    info       TEXT    NOT NULL,                 -- JSON
    status     TEXT,                             -- info["status"], for eviction without parsing JSON
    expires_at REAL,                             -- expiryDate / cacheExpiryDateTime as epoch seconds
    updated_at REAL    NOT NULL,
    last_used  INTEGER NOT NULL                  -- recency counter for least-recently-used eviction
);
CREATE INDEX auth_cache_last_used ON auth_cache (last_used);

-- Device model values (OCPP 2.0.1 components/variables; 1.6 keys are mapped onto them).
CREATE TABLE variables (
    component          TEXT    NOT NULL,
    component_instance TEXT    NOT NULL,
    evse_id            INTEGER NOT NULL,
    connector_id       INTEGER NOT NULL,
    variable           TEXT    NOT NULL,
    variable_instance  TEXT    NOT NULL,
    attribute_type     TEXT    NOT NULL,
    value              TEXT    NOT NULL,
    PRIMARY KEY (component, component_instance, evse_id, connector_id, variable, variable_instance,
                 attribute_type)
) WITHOUT ROWID;
"""

# Version 2: the Local Authorization List (OCPP 1.6 §3.5.2 / §5.15, OCPP 2.0.1 D01): idTag -> idTagInfo, and the
# list's version number in a one-row table (0 = no list received yet, 2.0.1 D02.FR.02).
_V2_LOCAL_LIST = """
CREATE TABLE local_list (
    id_tag TEXT PRIMARY KEY,
    info   TEXT NOT NULL                         -- JSON, a 1.6-style idTagInfo
) WITHOUT ROWID;

CREATE TABLE local_list_version (
    id      INTEGER PRIMARY KEY CHECK (id = 0),  -- one row only
    version INTEGER NOT NULL
);
INSERT INTO local_list_version (id, version) VALUES (0, 0);
"""

# Version 3: the security log (OCPP 2.0.1 A04.FR.04, rolling) with the queue of critical events not yet confirmed by
# the CSMS (A04.FR.01/02: critical = 1 AND delivered = 0). See secure_cp.securityevents.
_V3_SECURITY_LOG = """
CREATE TABLE security_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: names one event forever
    type      TEXT    NOT NULL,
    timestamp TEXT    NOT NULL,                    -- RFC 3339
    tech_info TEXT,
    critical  INTEGER NOT NULL CHECK (critical IN (0, 1)),
    delivered INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1))
);
CREATE INDEX security_log_queue ON security_log (id) WHERE critical = 1 AND delivered = 0;
"""

# Version 4: the index of the certificate store (OCPP 2.0.1 M03-M05, 1.6 whitepaper M03-M05): one row per installed
# certificate, its PEM in <data_dir>/certs/<file>. See secure_cp.security.certstore.
_V4_CERTIFICATES = """
CREATE TABLE certificates (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    cert_type    TEXT    NOT NULL,                 -- 2.0.1 name (1.6 CentralSystemRootCertificate = CSMSRootCertificate)
    fingerprint  TEXT    NOT NULL,                 -- SHA-256 of the DER, hex
    file         TEXT    NOT NULL UNIQUE,
    installed_at REAL    NOT NULL,
    UNIQUE (cert_type, fingerprint)
);
"""

# Version 5: Eichrecht (issue #5), see secure_cp.eichrecht. One OCMF pagination counter per context (T, F) for
# gateway-signed records; the legal log of every signed record (appended before it is queued, never deleted by
# ClearCache, upgrades or certificate rotation); the meters' public keys with their history (meter swaps).
_V5_EICHRECHT = """
CREATE TABLE ocmf_pagination (
    context TEXT    PRIMARY KEY CHECK (context IN ('T', 'F')),
    next    INTEGER NOT NULL CHECK (next >= 1)      -- the number the next record gets
) WITHOUT ROWID;
INSERT INTO ocmf_pagination (context, next) VALUES ('T', 1), ('F', 1);

CREATE TABLE meter_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    meter        TEXT    NOT NULL,                 -- which meter: e.g. "evse1", or the meter serial
    evse_id      INTEGER,
    connector_id INTEGER,
    serial       TEXT,
    public_key   TEXT    NOT NULL,                 -- DER SubjectPublicKeyInfo, upper-case hex
    installed_at REAL    NOT NULL,
    retired_at   REAL                              -- NULL: the meter's current key
);
CREATE UNIQUE INDEX meter_keys_current ON meter_keys (meter) WHERE retired_at IS NULL;

CREATE TABLE legal_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
    raw            TEXT    NOT NULL,               -- the OCMF record byte for byte
    tx_key         TEXT,                           -- the station's transaction key
    transaction_id TEXT,                           -- the CSMS's id, when known
    evse_id        INTEGER,
    connector_id   INTEGER,
    context        TEXT,                           -- OCPP ReadingContext (Transaction.Begin, Transaction.End, ...)
    pagination     TEXT,                           -- PG of the record, when it has one
    meter_key_id   INTEGER REFERENCES meter_keys (id),
    created_at     REAL    NOT NULL
);
CREATE INDEX legal_log_tx_key ON legal_log (tx_key) WHERE tx_key IS NOT NULL;
CREATE INDEX legal_log_transaction_id ON legal_log (transaction_id) WHERE transaction_id IS NOT NULL;
CREATE INDEX legal_log_created_at ON legal_log (created_at);
"""

# Version 6: the fallback CSMS root (2.0.1 M05.FR.12-16, 1.6 whitepaper M05.FR.11-13, AdditionalRootCertificateCheck
# true): the old root kept after a cross-signed new one was installed, until a connection with the new one succeeds.
_V6_FALLBACK_ROOT = """
ALTER TABLE certificates ADD COLUMN fallback INTEGER NOT NULL DEFAULT 0 CHECK (fallback IN (0, 1));
"""

# Version 7: a queued message touches no index page. Every durable write of a metering round trip deletes the
# delivered message and inserts the next one; with the two v1 indexes that meant five database pages per commit
# (table, both indexes, sqlite_sequence, the transaction row), now three. Pending items are read in seq order, which
# is the table's own order, and lookups by tx_key (GetTransactionStatus, customer information) are rare: a table
# scan there is cheaper than an index write on every message. Failed items (given up, kept for the operator) get a
# partial index: the CLI lists and counts them, and a pending message never enters it.
_V7_OUTBOX_INDEXES = """
DROP INDEX IF EXISTS outbox_status_seq;
DROP INDEX IF EXISTS outbox_tx_key;
CREATE INDEX outbox_failed ON outbox (seq) WHERE status = 'failed';
"""

MIGRATIONS: list[str] = [
    _V1_CORE,
    _V2_LOCAL_LIST,
    _V3_SECURITY_LOG,
    _V4_CERTIFICATES,
    _V5_EICHRECHT,
    _V6_FALLBACK_ROOT,
    _V7_OUTBOX_INDEXES,
]
