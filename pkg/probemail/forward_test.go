package probemail

import (
	"bytes"
	"strings"
	"testing"
)

// forwardedAsAttachment wraps msg as Outlook and Gmail forward "as
// attachment": a multipart/mixed with a note and the whole message as a
// message/rfc822 part, nested depth multiparts deep.
func forwardedAsAttachment(msg []byte, depth int) []byte {
	inner := "Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"probe.eml\"\r\n\r\n" + string(msg)
	for i := 0; i < depth; i++ {
		b := "b" + strings.Repeat("x", i)
		inner = "Content-Type: multipart/mixed; boundary=\"" + b + "\"\r\n\r\n--" + b + "\r\nContent-Type: text/plain\r\n\r\nFYI\r\n--" + b + "\r\n" + inner + "\r\n--" + b + "--\r\n"
	}
	return []byte("From: webscout@acme.example\r\nTo: scout@eu-west.return.test\r\nSubject: FW: Email Scout probe\r\n" +
		"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=acme.example; s=arc; b=AAAA\r\nMIME-Version: 1.0\r\n" + inner)
}

// TestForwardedProbes: a probe that comes back through a forwarding rule is
// recognised as it arrives: inline (its own header, a "FW:" subject, ARC
// and Received fields added) or as an attachment (the probe's header is
// the attached message's); its signature still verifies for the probe
// mailbox; a reflected probe says so.
func TestForwardedProbes(t *testing.T) {
	msg, err := Build(testProbe, testTo, testKey, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inline := append([]byte("Received: from mx.acme.example by forwarder.acme.example; Sat, 5 Dec 2026 10:00:01 +0000\r\n"+
		"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=acme.example; s=arc; b=AAAA\r\n"),
		bytes.Replace(msg, []byte("Subject: "), []byte("Subject: FW: "), 1)...)
	reflected, err := Reflect(msg, testProbe, testTo, testTo, testProbe.StartedAt.Add(2e9))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		msg  []byte
		path string
	}{
		"forwarded inline":                 {inline, PathForward},
		"forwarded as an attachment":       {forwardedAsAttachment(msg, 1), PathForwardAttachment},
		"attachment in a nested multipart": {forwardedAsAttachment(msg, 3), PathForwardAttachment},
		"reflected":                        {reflected, PathReflector},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := ParseReturned(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Path != tc.path || r.TestID != testProbe.TestID || r.MatchedBy != MatchHeader {
				t.Fatalf("path %q test %q matched by %q, want %q %q header", r.Path, r.TestID, r.MatchedBy, tc.path, testProbe.TestID)
			}
			if _, _, err := Verify(r.HeaderValue, testTo, keyring(t)); err != nil {
				t.Errorf("signature: %v", err)
			}
		})
	}
	// Deeper than maxAttachDepth, or no probe at all: nothing found.
	for name, m := range map[string][]byte{
		"too deep":      forwardedAsAttachment(msg, maxAttachDepth+1),
		"no probe":      forwardedAsAttachment([]byte("Subject: hello\r\n\r\nhi\r\n"), 1),
		"not multipart": []byte("Subject: FW: something\r\n\r\nbody\r\n"),
	} {
		if r, err := ParseReturned(m); err != nil || r.Path != "" || r.HeaderErr == nil {
			t.Errorf("%s: path %q header error %v (%v), want no probe", name, r.Path, r.HeaderErr, err)
		}
	}
}
