// Package sms does the segment arithmetic of SMS text: which encoding a text
// needs and how many segments (billed messages) it takes.
//
// A text is sent in the GSM 7-bit default alphabet when every character is
// in its basic table or its extension table (3GPP TS 23.038, section 6.2.1
// and 6.2.1.1); an extension character is sent as ESC plus a septet and
// counts 2. Any other character makes the whole text UCS-2 (UTF-16 code
// units; a character outside the Basic Multilingual Plane counts 2).
//
// One segment holds 160 GSM-7 septets or 70 UCS-2 units. A longer text is
// split into concatenated segments whose user data header (3GPP TS 23.040,
// section 9.2.3.24.1) leaves 153 septets or 67 units each; an escape
// sequence or a surrogate pair is never split across two segments.
package sms

import "unicode/utf16"

// Encoding is the character encoding a text needs.
type Encoding int

// Encodings.
const (
	GSM7 Encoding = iota // GSM 7-bit default alphabet (3GPP TS 23.038)
	UCS2                 // UCS-2 / UTF-16
)

// String returns "GSM-7" or "UCS-2".
func (e Encoding) String() string {
	if e == UCS2 {
		return "UCS-2"
	}
	return "GSM-7"
}

// Segment sizes, in septets (GSM-7) or UTF-16 code units (UCS-2).
const (
	GSM7Single = 160 // one GSM-7 segment
	GSM7Part   = 153 // one part of a concatenated GSM-7 message
	UCS2Single = 70  // one UCS-2 segment
	UCS2Part   = 67  // one part of a concatenated UCS-2 message
)

// gsmBasic is the basic character set, in code point order 0x00..0x7F.
// 0x1B (ESC, the escape to the extension table) is not a character; it is
// written as NUL here and never matches.
const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅå" +
	"Δ_ΦΓΛΩΠΨΣΘΞ\x00ÆæßÉ" +
	" !\"#¤%&'()*+,-./" +
	"0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNO" +
	"PQRSTUVWXYZÄÖÑÜ§" +
	"¿abcdefghijklmno" +
	"pqrstuvwxyzäöñüà"

// gsmExtension are the characters of the default extension table, each sent
// as ESC plus one septet: form feed, ^ { } \ [ ~ ] | and €.
const gsmExtension = "\f^{}\\[~]|€"

// septets maps every GSM-7 character to its size; built once, read only.
var septets = func() map[rune]int {
	m := map[rune]int{}
	for _, c := range gsmBasic {
		if c != 0 {
			m[c] = 1
		}
	}
	for _, c := range gsmExtension {
		m[c] = 2
	}
	return m
}()

// Septets returns how many septets r takes in the GSM 7-bit default
// alphabet: 1 (basic table), 2 (extension table) or 0 when r is not in it.
func Septets(r rune) int {
	return septets[r]
}

// Count describes the encoding and size of a text.
type Count struct {
	Encoding Encoding
	// Units are septets (GSM-7) or UTF-16 code units (UCS-2).
	Units int
	// Segments is the number of SMS the text is sent as (at least 1).
	Segments int
	// Limit is the size of one segment in Units: 160 or 70.
	Limit int
}

// Analyze counts text as a provider would send it.
func Analyze(text string) Count {
	enc := GSM7
	for _, r := range text {
		if Septets(r) == 0 {
			enc = UCS2
			break
		}
	}
	size := func(r rune) int {
		if enc == GSM7 {
			return Septets(r)
		}
		return utf16.RuneLen(r)
	}
	single, part := GSM7Single, GSM7Part
	if enc == UCS2 {
		single, part = UCS2Single, UCS2Part
	}
	units := 0
	for _, r := range text {
		units += size(r)
	}
	c := Count{Encoding: enc, Units: units, Segments: 1, Limit: single}
	if units <= single {
		return c
	}
	// Concatenated: fill each part, never splitting one character's units.
	used := 0
	for _, r := range text {
		n := size(r)
		if used+n > part {
			c.Segments++
			used = 0
		}
		used += n
	}
	return c
}

// Fits reports whether text is sent as one segment.
func Fits(text string) bool {
	return Analyze(text).Segments == 1
}
