package recorder

// Migration is one versioned step of the ClickHouse schema. Every statement
// must be idempotent (CREATE ... IF NOT EXISTS), so that a migration cut
// short by a crash, or run by two recorders starting at once, can be applied
// again safely.
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
	// Columns are set after the Statements ran, each idempotently
	// (Store.Migrate compares with system.columns): ClickHouse 18.16 has
	// no ADD COLUMN IF NOT EXISTS.
	Columns []Column
}

// Column is one column a migration adds where it is missing, or whose type
// it changes where it differs (an Enum8 that gains a value).
type Column struct {
	Table string
	Name  string
	Type  string // as ClickHouse prints it in system.columns
}

// migrationsTable records the applied migrations. ReplacingMergeTree keyed
// by version: two recorders that apply the same migration leave one row
// (after a merge; reads use FINAL).
const migrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    UInt32,
    name       String,
    applied_at DateTime
) ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version`

// Migrations is the schema, oldest first. Append new migrations with the
// next version; never edit an applied one. The types are limited to those
// ClickHouse 18.16 knows (no DateTime64, no LowCardinality, no Bool, no
// table TTL): times are DateTime (seconds, UTC) plus a UInt64 unix
// milliseconds column; booleans are UInt8. docs/analytics.md shows the
// variant for current servers.
func Migrations() []Migration {
	return []Migration{
		{Version: 1, Name: "check_results", Statements: []string{`CREATE TABLE IF NOT EXISTS check_results (
    test_id            String,
    check_id           String,
    customer           String,
    site               String,
    kind               Enum8('roundtrip' = 1, 'smtp' = 2, 'imap' = 3, 'pop3' = 4),
    attempt            UInt16,
    status             Enum8('ok' = 1, 'slow' = 2, 'degraded' = 3, 'timeout' = 4, 'failed' = 5, 'monitor_error' = 6),
    revision           UInt8,
    late               UInt8,
    started_at         DateTime,
    started_at_ms      UInt64,
    sent_at            Nullable(DateTime),
    sent_at_ms         Nullable(UInt64),
    reflected_at       Nullable(DateTime),
    reflected_at_ms    Nullable(UInt64),
    received_at        Nullable(DateTime),
    received_at_ms     Nullable(UInt64),
    finished_at        DateTime,
    finished_at_ms     UInt64,
    rtt_ms             Nullable(Int64),
    outgoing_leg_ms    Nullable(Int64),
    incoming_leg_ms    Nullable(Int64),
    skew_ms            Nullable(Int64),
    skew_suspect       UInt8,
    smtp_code          Nullable(UInt16),
    smtp_enhanced      String,
    smtp_text          String,
    error_class        String,
    error              String,
    phase              String,
    target             String,
    dns_ms             Float64,
    connect_ms         Float64,
    greeting_ms        Float64,
    tls_ms             Float64,
    capabilities_ms    Float64,
    auth_ms            Float64,
    transfer_ms        Float64,
    mailbox_ms         Float64,
    total_ms           Float64,
    peer_address       String,
    tls_version        String,
    tls_cipher_suite   String,
    tls_peer_not_after Nullable(DateTime),
    tls_days_left      Nullable(Int32),
    tls_hostname_match Nullable(UInt8),
    tls_verified       Nullable(UInt8),
    tls_peer_subject   String,
    tls_verify_error   String
) ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(started_at)
ORDER BY (check_id, site, started_at, test_id)`}},
		{Version: 2, Name: "incidents", Statements: []string{`CREATE TABLE IF NOT EXISTS incidents (
    incident_id    String,
    transition     Enum8('open' = 1, 'resolved' = 2),
    check_id       String,
    check_name     String,
    customer       String,
    kind           String,
    severity       Enum8('critical' = 1, 'warning' = 2),
    since          DateTime,
    since_ms       UInt64,
    opened_at      DateTime,
    opened_at_ms   UInt64,
    resolved_at    Nullable(DateTime),
    resolved_at_ms Nullable(UInt64),
    reason         String,
    sites          Array(String),
    site_verdicts  Array(String),
    quorum         UInt16,
    eligible       UInt16,
    notify         UInt8,
    silenced       String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(opened_at)
ORDER BY (check_id, opened_at, incident_id, transition)`}},
		{Version: 3, Name: "notifications", Statements: []string{`CREATE TABLE IF NOT EXISTS notifications (
    incident_id String,
    check_id    String,
    customer    String,
    transition  String,
    contact     String,
    address     String,
    provider    String,
    outcome     Enum8('sent' = 1, 'failed' = 2),
    provider_id String,
    attempts    UInt16,
    error       String,
    text        String,
    segments    UInt16,
    at          DateTime,
    at_ms       UInt64
) ENGINE = ReplacingMergeTree(at_ms)
PARTITION BY toYYYYMM(at)
ORDER BY (check_id, incident_id, transition, contact, address)`}},
		{Version: 4, Name: "notifications_suppressed", Columns: []Column{
			// notification.suppressed: recorded, deliberately not sent,
			// with the reason (docs/notifications.md).
			{Table: "notifications", Name: "outcome", Type: "Enum8('sent' = 1, 'failed' = 2, 'suppressed' = 3)"},
			{Table: "notifications", Name: "reason", Type: "String"},
		}},
		{Version: 5, Name: "evidence", Columns: []Column{
			// What each attempt showed (docs/evaluation.md, "Hard failures
			// told in minutes"; docs/analytics.md, "Evidence").
			{Table: "check_results", Name: "summary", Type: "String"},
			{Table: "check_results", Name: "warnings", Type: "Array(String)"},
			{Table: "check_results", Name: "first_hop", Type: "String"},
			{Table: "check_results", Name: "queue_id", Type: "String"},
			{Table: "check_results", Name: "transcript", Type: "Array(String)"},
			{Table: "check_results", Name: "deferred_reply", Type: "String"},
			{Table: "check_results", Name: "bounce_action", Type: "String"},
			{Table: "check_results", Name: "bounce_status", Type: "String"},
			{Table: "check_results", Name: "bounce_diagnostic", Type: "String"},
			{Table: "check_results", Name: "bounce_remote_mta", Type: "String"},
			{Table: "check_results", Name: "bounce_reporting_mta", Type: "String"},
			{Table: "check_results", Name: "hops", Type: "String"},
			{Table: "check_results", Name: "dkim", Type: "String"},
			{Table: "check_results", Name: "return_path", Type: "String"},
			{Table: "incidents", Name: "site_summaries", Type: "Array(String)"},
		}},
	}
}
