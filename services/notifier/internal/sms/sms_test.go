package sms

import (
	"strings"
	"testing"
)

// TestSeptets checks every character of the two GSM-7 tables of 3GPP TS
// 23.038 section 6.2.1, and a few that look similar but are not in them.
func TestSeptets(t *testing.T) {
	basic := "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	if n := len([]rune(basic)); n != 127 {
		t.Fatalf("basic table has %d characters, want 127 (128 code points minus ESC)", n)
	}
	for _, r := range basic {
		if got := Septets(r); got != 1 {
			t.Errorf("Septets(%q) = %d, want 1 (basic table)", r, got)
		}
	}
	for _, r := range "\f^{}\\[~]|€" {
		if got := Septets(r); got != 2 {
			t.Errorf("Septets(%q) = %d, want 2 (extension table)", r, got)
		}
	}
	// Not in GSM-7: small c cedilla (only capital Ç is), backtick, acute
	// accents other than é/É, Polish letters, the ellipsis, emoji, NUL.
	for _, r := range "ç`áÁíóúłŁ…😀\x00\t" {
		if got := Septets(r); got != 0 {
			t.Errorf("Septets(%q) = %d, want 0 (needs UCS-2)", r, got)
		}
	}
}

func TestAnalyze(t *testing.T) {
	a := strings.Repeat
	cases := []struct {
		name     string
		text     string
		enc      Encoding
		units    int
		segments int
	}{
		{"empty", "", GSM7, 0, 1},
		{"160 basic", a("a", 160), GSM7, 160, 1},
		{"161 basic", a("a", 161), GSM7, 161, 2},
		{"306 basic fills two parts", a("a", 306), GSM7, 306, 2},
		{"307 basic", a("a", 307), GSM7, 307, 3},
		{"80 euro signs are 160 septets", a("€", 80), GSM7, 160, 1},
		{"81 euro signs", a("€", 81), GSM7, 162, 2},
		{"159 basic + one extension", a("a", 159) + "[", GSM7, 161, 2},
		{"158 basic + one extension", a("a", 158) + "]", GSM7, 160, 1},
		// 306 septets would fit 2 parts, but an escape pair is never split:
		// part 1 takes 152 'a' (one septet left), part 2 takes 76 '€'
		// (one left), part 3 the last '€'.
		{"escape pairs are not split", a("a", 152) + a("€", 77), GSM7, 306, 3},
		{"gsm accents stay GSM-7", "Zürich Ærø Müller", GSM7, 17, 1},
		{"one ucs-2 character switches the text", a("a", 69) + "ł", UCS2, 70, 1},
		{"71 ucs-2 units", a("a", 70) + "ł", UCS2, 71, 2},
		{"emoji counts 2 units", a("a", 68) + "😀", UCS2, 70, 1},
		{"35 emoji fill one segment", a("😀", 35), UCS2, 70, 1},
		// 134 units would fit 2 parts of 67, but a surrogate pair is not
		// split: 33 emoji per part.
		{"surrogate pairs are not split", a("😀", 67), UCS2, 134, 3},
		{"c cedilla is UCS-2", "Façade", UCS2, 6, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Analyze(tc.text)
			if c.Encoding != tc.enc || c.Units != tc.units || c.Segments != tc.segments {
				t.Errorf("Analyze = %s %d units %d segments, want %s %d units %d segments",
					c.Encoding, c.Units, c.Segments, tc.enc, tc.units, tc.segments)
			}
			wantLimit := GSM7Single
			if tc.enc == UCS2 {
				wantLimit = UCS2Single
			}
			if c.Limit != wantLimit {
				t.Errorf("limit %d, want %d", c.Limit, wantLimit)
			}
			if Fits(tc.text) != (tc.segments == 1) {
				t.Errorf("Fits = %v with %d segments", Fits(tc.text), tc.segments)
			}
		})
	}
}

func BenchmarkAnalyze(b *testing.B) {
	text := "DOWN ACME mail round trip: no return from 2 of 3 sites; retest failed. Since 12:04 UTC, sites eu-west, us-east. Incident ab12cd34"
	for b.Loop() {
		Analyze(text)
	}
}
