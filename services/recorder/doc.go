// Package recorder is Email Scout's history writer: it consumes every
// check.result, incident.* and notification.* event from JetStream (durable
// consumer events.RecorderConsumer) and writes them to ClickHouse in
// batches, so that analysts can query latency trends, slow shares, outages
// and clock skew over months (docs/analytics.md).
//
// Delivery: a batch is bounded by size (Config.BatchSize rows) and time
// (Config.BatchWait after its first row) and inserted with PrepareBatch; its
// JetStream messages are acked only after ClickHouse accepted it. While
// ClickHouse is down the batch is retried with exponential backoff and no
// new message is taken, so the backlog waits in JetStream and nothing is
// lost. Every table is a ReplacingMergeTree keyed by the event's identity
// (test id with the revision as version; incident id and transition;
// notification id), so an insert repeated after a lost ack leaves one row;
// queries read with FINAL.
//
// Schema: versioned migrations (Migrations) applied at start and recorded
// in schema_migrations. The types are those ClickHouse 18.16 (Debian's
// package, used by CI) supports, which is why clickhouse-go/v2 is pinned at
// v2.26.0 (see go.mod and docs/analytics.md).
//
// The same package holds the analysts' documented queries (queries/*.sql,
// Store.HourlyRTT and friends), used by `scout history` and the Grafana
// dashboard.
package recorder
