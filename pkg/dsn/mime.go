package dsn

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"regexp"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

// bounce holds the parts of a bounce that the parsers read.
type bounce struct {
	header   Report // the bounce's own header fields (From, To, Subject, MessageID)
	status   []byte // the first message/delivery-status part, decoded; nil when none
	original []byte // the first returned original, at most MaxOriginalHeaderBytes+1 bytes; nil when none
	text     []byte // the human-readable text: text/plain parts, else text/html as text
	what     string // what the message is, for ErrNotBounce
}

// readBounce reads the bounce's header and walks its MIME parts (RFC 2045,
// RFC 2046) within maxParts and maxDepth. A part that cannot be read ends
// the walk: what was read so far is kept.
func readBounce(msg []byte) (*bounce, error) {
	e, err := message.ReadWithOptions(bytes.NewReader(msg), &message.ReadOptions{MaxHeaderBytes: maxHeaderBytes})
	if e == nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	b := &bounce{header: ownHeader(e.Header)}
	mt, params, _ := e.Header.ContentType()
	b.what = "a message of type " + firstOf(mt, "text/plain")
	if mt == "multipart/report" {
		b.what += "; report-type=" + params["report-type"]
	}
	w := walker{b: b}
	w.walk(e, 0)
	b.text = w.plain.Bytes()
	if len(bytes.TrimSpace(b.text)) == 0 {
		b.text = htmlText(w.html.Bytes())
	}
	return b, nil
}

// ownHeader returns the bounce's From, To, Subject and Message-ID.
func ownHeader(h message.Header) Report {
	mh := mail.Header{Header: h}
	var r Report
	if from, err := mh.AddressList("From"); err == nil && len(from) > 0 {
		r.From = from[0].Address
	}
	if to, err := mh.AddressList("To"); err == nil && len(to) > 0 {
		r.To = to[0].Address
	}
	r.Subject = oneLine(fieldText(h, "Subject"))
	r.MessageID, _ = mh.MessageID()
	return r
}

// fieldText returns the decoded value of the header field k (RFC 2047), or its
// raw value when it does not decode.
func fieldText(h message.Header, k string) string {
	if v, err := h.Text(k); err == nil {
		return strings.TrimSpace(v)
	}
	return strings.TrimSpace(h.Get(k))
}

type walker struct {
	b           *bounce
	parts       int
	plain, html bytes.Buffer
}

// walk visits e and, for a multipart, its parts depth-first.
func (w *walker) walk(e *message.Entity, depth int) {
	w.parts++
	if w.parts > maxParts {
		return
	}
	if mr := e.MultipartReader(); mr != nil {
		if depth >= maxDepth {
			return
		}
		for w.parts < maxParts {
			p, _ := mr.NextPart() // an unknown charset or encoding still gives a part
			if p == nil {
				return
			}
			w.walk(p, depth+1)
		}
		return
	}
	mt, _, _ := e.Header.ContentType()
	switch mt {
	case "message/delivery-status", "message/global-delivery-status": // RFC 3464, RFC 6533
		if w.b.status == nil {
			w.b.status = readAtMost(e.Body, maxTextBytes)
		}
	case "message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers": // RFC 6522, RFC 6532
		if w.b.original == nil {
			w.b.original = readAtMost(e.Body, MaxOriginalHeaderBytes+1)
		}
	case "", "text/plain":
		appendText(&w.plain, e.Body)
	case "text/html":
		appendText(&w.html, e.Body)
	}
}

// appendText appends r to buf, keeping buf within maxTextBytes.
func appendText(buf *bytes.Buffer, r io.Reader) {
	if room := maxTextBytes - buf.Len(); room > 0 {
		buf.Write(readAtMost(r, room))
		buf.WriteByte('\n')
	}
}

// readAtMost reads up to n bytes of r; a read error ends it early (a broken
// base64 part gives what decoded).
func readAtMost(r io.Reader, n int) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, int64(n)))
	return b
}

var (
	htmlDrop  = regexp.MustCompile(`(?is)<(?:style|script|head)\b.*?</(?:style|script|head)\s*>`)
	htmlBreak = regexp.MustCompile(`(?i)<(?:br|p|/p|div|/div|tr|/tr|li|/li|/h[1-6]|/table|/pre)\b[^>]*>`)
	htmlTag   = regexp.MustCompile(`<[^>]*>`)
)

// htmlText turns an HTML notice into text: style, script and head are
// dropped, block ends become line ends, other tags are removed and
// character references decoded. It is enough for the fallback parsers,
// which read lines.
func htmlText(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	b = htmlDrop.ReplaceAll(b, nil)
	b = htmlBreak.ReplaceAll(b, []byte("\n"))
	b = htmlTag.ReplaceAll(b, nil)
	return []byte(html.UnescapeString(string(b)))
}
