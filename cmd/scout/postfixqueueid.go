package main

import (
	"strings"
	"time"
)

// postfixSafeChars is the alphabet of Postfix's long queue ids: digits and
// letters without vowels (safe_ultostr(3), in Postfix's source).
const postfixSafeChars = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"

// postfixArrival returns the time a long Postfix queue id carries: the
// moment its queue file was created, which is when the message arrived
// (smtpd(8) opens it at the first accepted RCPT TO, pickup(8) when it
// takes a sendmail submission), to the microsecond, on the mail server's
// clock.
//
// A long queue id (postconf(5), enable_long_queue_ids = yes; the form is
// described in Postfix's mail_queue.h) is the time in seconds, base 52 in
// six or more characters, the microseconds, base 52 in exactly four, a
// 'z', and the inode number, base 51. ok is false for a short (hex) queue
// id or anything else.
func postfixArrival(queueID string) (at time.Time, ok bool) {
	sep := strings.LastIndexByte(queueID, 'z')
	if sep < 10 || sep == len(queueID)-1 {
		return time.Time{}, false
	}
	stamp := queueID[:sep]
	seconds, ok1 := base52(stamp[:len(stamp)-4])
	micros, ok2 := base52(stamp[len(stamp)-4:])
	if !ok1 || !ok2 || micros >= 1_000_000 {
		return time.Time{}, false
	}
	return time.Unix(int64(seconds), int64(micros)*1000).UTC(), true
}

// base52 decodes s in postfixSafeChars; ok is false for any other
// character or a value that would not fit a time.
func base52(s string) (v uint64, ok bool) {
	for i := 0; i < len(s); i++ {
		d := strings.IndexByte(postfixSafeChars, s[i])
		if d < 0 || v > (1<<40) {
			return 0, false
		}
		v = v*52 + uint64(d)
	}
	return v, true
}
