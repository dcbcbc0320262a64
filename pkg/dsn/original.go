package dsn

import (
	"bytes"

	"github.com/emailscout/emailscout/pkg/probemail"
	"github.com/emersion/go-message/textproto"
)

// readOriginal reads the header of a returned original (the body of a
// message/rfc822, message/global or text/rfc822-headers part, RFC 6522
// section 3, or a copy quoted in a notice's text). It reads at most
// MaxOriginalHeaderBytes; a malformed line ends the header. It returns nil
// when there is no header field to read.
func readOriginal(b []byte) *Original {
	hdr, truncated := headerBlock(probemail.StripMboxFrom(b))
	h := readFields(hdr)
	if h.Len() == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, h); err != nil {
		return nil
	}
	ret, err := probemail.ParseReturned(buf.Bytes())
	if err != nil {
		return nil
	}
	return &Original{
		Probe:     ret.HeaderValue,
		MessageID: ret.MessageID,
		Subject:   ret.Subject,
		TestID:    ret.TestID,
		MatchedBy: ret.MatchedBy,
		Truncated: truncated,
	}
}

// headerBlock returns the header of message b, without leading empty lines
// and up to its first empty line, and whether it was cut: a header longer
// than MaxOriginalHeaderBytes is cut after its last whole line within the
// limit.
func headerBlock(b []byte) ([]byte, bool) {
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 && i < MaxOriginalHeaderBytes {
		return b[:i+1], false
	}
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 && i < MaxOriginalHeaderBytes {
		return b[:i+1], false
	}
	if len(b) <= MaxOriginalHeaderBytes {
		return b, false
	}
	b = b[:MaxOriginalHeaderBytes]
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	}
	return b, true
}

// quotedOriginal finds the copy of the original a notice's text quotes
// and reads its header; nil when there is none.
func quotedOriginal(text []byte) *Original {
	markers := [...]string{
		"--- Below this line is a copy of the message.",                           // qmail
		"--- Enclosed are the original headers of the message.",                   // qmail, headers only
		"------ This is a copy of the message, including all the headers. ------", // Exim
		"------ This is a copy of the message's headers. ------",                  // Exim, headers only
		"Original message headers:",                                               // Exchange
	}
	at := -1
	for _, m := range markers {
		if i := bytes.Index(text, []byte(m)); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at < 0 {
		return nil
	}
	rest := text[at:]
	// Skip the marker line, then empty lines and Exim's "------ " notes.
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return nil
		}
		rest = rest[i+1:]
		l := bytes.TrimSpace(rest[:lineEnd(rest)])
		if len(l) != 0 && !bytes.HasPrefix(l, []byte("------ ")) {
			return readOriginal(bytes.TrimLeft(rest, " \t"))
		}
	}
}

// lineEnd returns the index of the first line end of b, or len(b).
func lineEnd(b []byte) int {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return i
	}
	return len(b)
}
