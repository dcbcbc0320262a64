package events

import (
	"fmt"
	"hash/fnv"
	"strconv"
)

// Partitions is the number of check partitions of the events stream. The
// stream's subject transform (PartitionTransform) appends to every subject
// routed by site and check a last token, the check's partition in
// [0, Partitions), so that the evaluator's work divides by check: one
// durable consumer per partition, and replicas share the partitions
// (docs/architecture.md, "Partitions"). Every site of a check falls in the
// same partition. It bounds the evaluator replicas that add throughput.
const Partitions = 16

// PartitionTransform is the events stream's subject transform: a subject
// of four tokens "<name>.<site>.<check>" (two name tokens) is stored as
// "<name>.<site>.<check>.<partition>", the partition computed by the
// server's subject-mapping function partition(Partitions, 4) (FNV-1a of
// the check token; NATS "Subject Mapping and Partitioning"). Subjects of
// three tokens (incident.*, notification.*, monitor.health) are stored as
// published. Core NATS subscribers see the subject as published.
func PartitionTransform() (source, destination string) {
	return "*.*.*.*", fmt.Sprintf("{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}.{{wildcard(4)}}.{{partition(%d,4)}}", Partitions)
}

// PartitionOf returns the partition the stream stores check's events in:
// the same FNV-1a 32-bit hash modulo Partitions the server computes
// (a contract test compares them on a real server).
func PartitionOf(check string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(check))
	return int(h.Sum32() % Partitions)
}

// ParsePartition reads a partition token as PartitionTransform writes it:
// a decimal in [0, Partitions) without leading zeros ("11", not "011").
func ParsePartition(tok string) (int, bool) {
	p, err := strconv.Atoi(tok)
	if err != nil || p < 0 || p >= Partitions || strconv.Itoa(p) != tok {
		return 0, false
	}
	return p, true
}

// PartitionFilter returns the filter subject of subject name's events in
// partition p: "<name>.*.*.<p>". Only names routed by site and check are
// partitioned.
func PartitionFilter(name string, p int) string {
	return name + ".*.*." + strconv.Itoa(p)
}

// StoredFilters returns the filter subjects that match the stored form of
// a site- and check-routed subject (or pattern, e.g. "check.result.*.acme"):
// the partitioned form and, for events stored before the stream had its
// transform, the form as published.
func StoredFilters(subject string) []string {
	return []string{subject, subject + ".*"}
}

// StoredSubject returns the subject the events stream stores an event
// published on subject under: with the check's partition appended when
// subject is routed by site and check (PartitionTransform), unchanged
// otherwise.
func StoredSubject(subject string) string {
	s, err := ParseSubject(subject)
	if err != nil || s.Site == "" || s.Check == "" || s.String() != subject {
		return subject
	}
	return subject + "." + strconv.Itoa(PartitionOf(s.Check))
}
