//go:build integration

package recorder_test

import (
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/chtest"
	"github.com/emailscout/emailscout/internal/natstest"
	"github.com/emailscout/emailscout/services/recorder"
)

// TestMigrationWidensNotifications: a database at version 3 (before
// suppressed notifications were recorded) is brought to the current
// schema, keeps its rows, then takes a suppressed notification with its
// reason; applying every migration again (a run cut short before it was
// recorded) changes nothing and fails nothing.
func TestMigrationWidensNotifications(t *testing.T) {
	ch := chtest.Start(t)
	ctx := natstest.Context(t)
	db := dbName(t)
	if err := recorder.CreateDatabase(ctx, ch.DSN(db)); err != nil {
		t.Fatal(err)
	}
	st, err := recorder.OpenStore(ctx, ch.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all := recorder.Migrations()
	if _, err := st.Migrate(ctx, all[:3]); err != nil {
		t.Fatal(err)
	}
	conn := rawConn(t, ch, db)
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	old := recorder.NotificationRow{IncidentID: "inc-0", CheckID: "acme-rt", Transition: "open", Contact: "ops", Outcome: "sent", At: at, AtMS: uint64(at.UnixMilli())}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO notifications (incident_id, check_id, customer, transition, contact, address, provider, outcome, provider_id, attempts, error, text, segments, at, at_ms)")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append(old.IncidentID, old.CheckID, "", old.Transition, old.Contact, "", "", old.Outcome, "", uint16(1), "", "", uint16(1), old.At, old.AtMS); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}

	applied, err := st.Migrate(ctx, all)
	if err != nil || len(applied) != len(all)-3 {
		t.Fatalf("Migrate from version 3 applied %v, %v; want versions 4..%d", applied, err, len(all))
	}
	var outcomeType string
	if err := conn.QueryRow(ctx, "SELECT type FROM system.columns WHERE database = ? AND table = 'notifications' AND name = 'outcome'", db).Scan(&outcomeType); err != nil {
		t.Fatal(err)
	}
	if outcomeType != "Enum8('sent' = 1, 'failed' = 2, 'suppressed' = 3)" {
		t.Errorf("outcome is %s", outcomeType)
	}
	suppressed := recorder.Rows{Notifications: []recorder.NotificationRow{{
		IncidentID: "inc-1", CheckID: "acme-rt", Transition: "open", Contact: "ops", Address: "+15555550100", Provider: "twilio",
		Outcome: "suppressed", Reason: "opened inside weekly Sat 22:00-02:00 UTC", At: at, AtMS: uint64(at.UnixMilli()),
	}}}
	if err := st.Insert(ctx, &suppressed); err != nil {
		t.Fatalf("insert a suppressed notification: %v", err)
	}
	var reason string
	if err := conn.QueryRow(ctx, "SELECT reason FROM notifications FINAL WHERE outcome = 'suppressed'").Scan(&reason); err != nil {
		t.Fatal(err)
	}
	if reason != suppressed.Notifications[0].Reason {
		t.Errorf("reason %q", reason)
	}
	if n := count(t, ctx, conn, "SELECT count() FROM notifications FINAL WHERE incident_id = 'inc-0' AND reason = ''"); n != 1 {
		t.Errorf("the row from before the migration: %d rows, want 1 with an empty reason", n)
	}

	// Every migration again, as after a crash before schema_migrations
	// recorded them.
	if err := conn.Exec(ctx, "DROP TABLE schema_migrations"); err != nil {
		t.Fatal(err)
	}
	if applied, err := st.Migrate(ctx, all); err != nil || len(applied) != len(all) {
		t.Fatalf("Migrate again applied %v, %v; want every version without an error", applied, err)
	}
	if n := count(t, ctx, conn, "SELECT count() FROM notifications FINAL"); n != 2 {
		t.Errorf("notifications: %d rows after migrating again, want 2", n)
	}
}
