package recorder

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMigrationsOrdered: versions are 1, 2, 3, ... in order and every
// statement can run twice (a migration cut short is applied again).
func TestMigrationsOrdered(t *testing.T) {
	ms := Migrations()
	if err := checkOrder(ms); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		for _, s := range m.Statements {
			if !strings.Contains(s, "IF NOT EXISTS") {
				t.Errorf("migration %d %s: statement is not idempotent: %.60s", m.Version, m.Name, s)
			}
			for _, banned := range []string{"DateTime64", "LowCardinality", " TTL ", "Bool"} {
				if strings.Contains(s, banned) {
					t.Errorf("migration %d %s uses %s, which ClickHouse 18.16 does not support", m.Version, m.Name, banned)
				}
			}
		}
		for _, c := range m.Columns {
			for _, banned := range []string{"DateTime64", "LowCardinality", "Bool"} {
				if strings.Contains(c.Type, banned) {
					t.Errorf("migration %d %s: column %s uses %s, which ClickHouse 18.16 does not support", m.Version, m.Name, c.Name, banned)
				}
			}
		}
	}
}

func TestCheckOrderRejects(t *testing.T) {
	stmt := []string{"CREATE TABLE IF NOT EXISTS x (a UInt8) ENGINE = Memory"}
	tests := []struct {
		name string
		ms   []Migration
		want string
	}{
		{"gap", []Migration{{Version: 1, Name: "a", Statements: stmt}, {Version: 3, Name: "c", Statements: stmt}}, "migration 3 (c) is at position 2"},
		{"swapped", []Migration{{Version: 2, Name: "b", Statements: stmt}, {Version: 1, Name: "a", Statements: stmt}}, "migration 2 (b) is at position 1"},
		{"duplicate", []Migration{{Version: 1, Name: "a", Statements: stmt}, {Version: 1, Name: "a2", Statements: stmt}}, "migration 1 (a2) is at position 2"},
		{"empty", []Migration{{Version: 1, Name: "a"}}, "migration 1 (a) has neither statements nor columns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkOrder(tt.ms)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("checkOrder = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestPendingMigrations(t *testing.T) {
	ms := []Migration{{Version: 3, Name: "c"}, {Version: 1, Name: "a"}, {Version: 2, Name: "b"}}
	for current, want := range map[uint32][]uint32{0: {1, 2, 3}, 1: {2, 3}, 2: {3}, 3: nil, 7: nil} {
		var got []uint32
		for _, m := range pending(ms, current) {
			got = append(got, m.Version)
		}
		if !slices.Equal(got, want) {
			t.Errorf("pending after %d = %v, want %v", current, got, want)
		}
	}
}

func TestMonthExpired(t *testing.T) {
	cutoff := time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)
	for partition, want := range map[string]bool{
		"202601":  true,  // ended 2026-02-01
		"202602":  true,  // ended 2026-03-01
		"202603":  false, // holds rows after the cutoff
		"202604":  false,
		"202512":  true,
		"202613":  false, // not a month
		"tuple()": false,
		"2026":    false,
	} {
		if got := monthExpired(partition, cutoff); got != want {
			t.Errorf("monthExpired(%q, %v) = %v, want %v", partition, cutoff, got, want)
		}
	}
	if !monthExpired("202602", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Error("a month that ends exactly at the cutoff is expired")
	}
}
