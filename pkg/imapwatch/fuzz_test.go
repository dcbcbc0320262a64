package imapwatch_test

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/imapwatch"
)

// FuzzReturnPath: any header block (what the watcher fetches with
// BODY.PEEK[HEADER]) gives the Return-Path's address, or ok false; never a
// panic. A found address has no angle brackets left at its ends, no line
// break, and the header does have a Return-Path field (RFC 5321 section
// 4.4).
func FuzzReturnPath(f *testing.F) {
	for _, seed := range []string{
		"Return-Path: <scout@return.example>\r\nTo: a@b\r\n\r\n",
		"Return-Path: <>\r\n\r\n",
		"To: a@b\r\n\r\n",
		"return-path:   <x@y>  \r\n\r\n",
		"Return-Path: <a@b>\r\nReturn-Path: <c@d>\r\n\r\n",
		"Return-Path:\r\n <folded@example>\r\n\r\n",
		"Return-Path: <a@b",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		m := &imapwatch.Message{Header: header}
		addr, ok := m.ReturnPath()
		if !ok {
			if addr != "" {
				t.Fatalf("address %q without a Return-Path", addr)
			}
			return
		}
		if strings.HasPrefix(addr, "<") || strings.HasSuffix(addr, ">") || strings.ContainsAny(addr, "\r\n") {
			t.Fatalf("address %q", addr)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(header))
		if err != nil || len(msg.Header["Return-Path"]) == 0 {
			t.Fatalf("Return-Path %q found in a header without one (%v)", addr, err)
		}
	})
}
