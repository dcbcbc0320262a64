// Package doclinks checks the repository's documentation: its test reads
// README.md and docs/*.md and fails on a relative link to a file that does
// not exist or to a heading anchor that no heading produces (GitHub's
// anchor rules: lower case, punctuation dropped, spaces to hyphens, -1, -2
// for repeats). It has no code of its own; `go test work` runs the check.
package doclinks
