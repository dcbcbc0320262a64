package recorder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Store is the recorder's ClickHouse database: inserts, migrations,
// retention and the analysts' queries. It speaks the native protocol only
// (clickhouse-go/v2 v2.26.0; see docs/analytics.md for why this version).
// A Store is safe for concurrent use.
type Store struct {
	conn driver.Conn
	db   string
}

// ParseDSN checks a ClickHouse DSN of the form
// clickhouse://[user[:password]@]host:port[,host:port...]/database[?options]
// and returns its options. The database defaults to "default". Only the
// native protocol (scheme clickhouse or tcp) is accepted: the HTTP protocol
// of clickhouse-go does not work with ClickHouse 18.16. Errors never contain
// the password.
func ParseDSN(dsn string) (*clickhouse.Options, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", errors.Unwrap(err))
	}
	switch u.Scheme {
	case "clickhouse", "tcp":
	case "":
		return nil, fmt.Errorf("%q has no scheme: want clickhouse://host:port/database", RedactDSN(dsn))
	default:
		return nil, fmt.Errorf("%q: scheme %q is not supported: use clickhouse:// (the native protocol)", RedactDSN(dsn), u.Scheme)
	}
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%q: %s", RedactDSN(dsn), strings.ReplaceAll(err.Error(), dsn, RedactDSN(dsn)))
	}
	if opts.Auth.Database == "" {
		opts.Auth.Database = "default"
	}
	if strings.ContainsAny(opts.Auth.Database, "`/ ") {
		return nil, fmt.Errorf("%q: database name %q is not allowed", RedactDSN(dsn), opts.Auth.Database)
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	return opts, nil
}

// RedactDSN returns dsn with its password (user info or password= option)
// replaced by "xxxxx", for logs and errors.
func RedactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// OpenStore connects to the ClickHouse server of dsn (see ParseDSN) and
// checks the connection with a ping. The database must exist (see
// CreateDatabase).
func OpenStore(ctx context.Context, dsn string) (*Store, error) {
	opts, err := ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("clickhouse dsn: %w", err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse open %s: %w", RedactDSN(dsn), err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse ping %s: %w", RedactDSN(dsn), err)
	}
	return &Store{conn: conn, db: opts.Auth.Database}, nil
}

// CreateDatabase creates the database named in dsn when it does not exist,
// connecting through the server's "default" database.
func CreateDatabase(ctx context.Context, dsn string) error {
	opts, err := ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("clickhouse dsn: %w", err)
	}
	db := opts.Auth.Database
	opts.Auth.Database = "default"
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return fmt.Errorf("clickhouse open %s: %w", RedactDSN(dsn), err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+db+"`"); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.conn.Close() }

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse ping: %w", err)
	}
	return nil
}

// Migrate applies the migrations newer than the newest one recorded in
// schema_migrations, in version order, and returns the versions it applied.
// Statements are idempotent, so a migration interrupted half-way is simply
// applied again at the next start.
func (s *Store) Migrate(ctx context.Context, migrations []Migration) ([]uint32, error) {
	if err := checkOrder(migrations); err != nil {
		return nil, err
	}
	if err := s.conn.Exec(ctx, migrationsTable); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var current uint32
	if err := s.conn.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&current); err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	var applied []uint32
	for _, m := range pending(migrations, current) {
		for i, stmt := range m.Statements {
			if err := s.conn.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migrate: %d %s: statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		for _, c := range m.Columns {
			if err := s.setColumn(ctx, c); err != nil {
				return applied, fmt.Errorf("migrate: %d %s: column %s.%s: %w", m.Version, m.Name, c.Table, c.Name, err)
			}
		}
		// An INSERT ... VALUES through Exec hangs on ClickHouse 18.16:
		// every insert goes through PrepareBatch.
		b, err := s.conn.PrepareBatch(ctx, "INSERT INTO schema_migrations")
		if err != nil {
			return applied, fmt.Errorf("migrate: %d %s: record: %w", m.Version, m.Name, err)
		}
		if err := b.Append(m.Version, m.Name, time.Now().UTC().Truncate(time.Second)); err != nil {
			_ = b.Abort()
			return applied, fmt.Errorf("migrate: %d %s: record: %w", m.Version, m.Name, err)
		}
		if err := b.Send(); err != nil {
			return applied, fmt.Errorf("migrate: %d %s: record: %w", m.Version, m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// setColumn adds c where its table lacks it and changes its type where it
// differs; a column that is as c says is left alone.
func (s *Store) setColumn(ctx context.Context, c Column) error {
	var have string
	err := s.conn.QueryRow(ctx, "SELECT type FROM system.columns WHERE database = currentDatabase() AND table = ? AND name = ?",
		c.Table, c.Name).Scan(&have)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return s.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", c.Table, c.Name, c.Type))
	case err != nil:
		return err
	case have != c.Type:
		return s.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s MODIFY COLUMN %s %s", c.Table, c.Name, c.Type))
	}
	return nil
}

// checkOrder reports migrations whose versions are not 1, 2, 3, ... in
// order, or that have neither statements nor columns.
func checkOrder(migrations []Migration) error {
	var errs []error
	for i, m := range migrations {
		if want := uint32(i + 1); m.Version != want {
			errs = append(errs, fmt.Errorf("migration %d (%s) is at position %d: versions must be 1, 2, 3, ... in order", m.Version, m.Name, want))
		}
		if len(m.Statements) == 0 && len(m.Columns) == 0 {
			errs = append(errs, fmt.Errorf("migration %d (%s) has neither statements nor columns", m.Version, m.Name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("migrate: %w", errors.Join(errs...))
	}
	return nil
}

// pending returns the migrations newer than current, oldest first.
func pending(migrations []Migration, current uint32) []Migration {
	out := slices.Clone(migrations)
	slices.SortFunc(out, func(a, b Migration) int { return int(a.Version) - int(b.Version) })
	i, _ := slices.BinarySearchFunc(out, current+1, func(m Migration, v uint32) int { return int(m.Version) - int(v) })
	return out[i:]
}

// Insert writes the rows of one batch, one PrepareBatch per table. It
// returns nil only when ClickHouse accepted every table's rows. On an error
// some tables may have been written: inserting the same rows again is safe
// because every table is a ReplacingMergeTree keyed by the event's identity.
func (s *Store) Insert(ctx context.Context, rows *Rows) error {
	if err := insert(ctx, s.conn, "check_results", rows.Results); err != nil {
		return err
	}
	if err := insert(ctx, s.conn, "incidents", rows.Incidents); err != nil {
		return err
	}
	return insert(ctx, s.conn, "notifications", rows.Notifications)
}

func insert[T any](ctx context.Context, conn driver.Conn, table string, rows []T) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+table)
	if err != nil {
		return fmt.Errorf("insert into %s: prepare: %w", table, err)
	}
	for i := range rows {
		if err := b.AppendStruct(&rows[i]); err != nil {
			_ = b.Abort()
			return fmt.Errorf("insert into %s: row %d: %w", table, i, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: send %d rows: %w", table, len(rows), err)
	}
	return nil
}

// partitionedTables are the tables partitioned by toYYYYMM of their time.
var partitionedTables = []string{"check_results", "incidents", "notifications"}

// DropExpired drops the monthly partitions whose every row is older than
// cutoff: partition YYYYMM goes once the month ended before cutoff. It
// returns the partitions dropped as "table/YYYYMM". ClickHouse 18.16 has
// no table TTL, so retention is done this way (at month granularity).
func (s *Store) DropExpired(ctx context.Context, cutoff time.Time) ([]string, error) {
	rows, err := s.conn.Query(ctx, `SELECT DISTINCT table, partition FROM system.parts
WHERE database = ? AND active AND table IN (?, ?, ?)
ORDER BY table, partition`, s.db, partitionedTables[0], partitionedTables[1], partitionedTables[2])
	if err != nil {
		return nil, fmt.Errorf("retention: list partitions: %w", err)
	}
	type part struct{ table, partition string }
	var expired []part
	for rows.Next() {
		var p part
		if err := rows.Scan(&p.table, &p.partition); err != nil {
			rows.Close()
			return nil, fmt.Errorf("retention: list partitions: %w", err)
		}
		if monthExpired(p.partition, cutoff) {
			expired = append(expired, p)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retention: list partitions: %w", err)
	}
	var dropped []string
	for _, p := range expired {
		if err := s.conn.Exec(ctx, "ALTER TABLE "+p.table+" DROP PARTITION "+p.partition); err != nil {
			return dropped, fmt.Errorf("retention: drop %s partition %s: %w", p.table, p.partition, err)
		}
		dropped = append(dropped, p.table+"/"+p.partition)
	}
	return dropped, nil
}

// monthExpired reports whether partition "YYYYMM" holds only times before
// cutoff, that is the month ended at or before cutoff. Other partition ids
// are never expired.
func monthExpired(partition string, cutoff time.Time) bool {
	if len(partition) != 6 {
		return false
	}
	n, err := strconv.Atoi(partition)
	if err != nil {
		return false
	}
	y, m := n/100, time.Month(n%100)
	if m < 1 || m > 12 {
		return false
	}
	end := time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
	return !end.After(cutoff)
}
