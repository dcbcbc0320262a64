package logsms_test

import (
	"context"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/services/notifier/delivery"
	"github.com/emailscout/emailscout/services/notifier/internal/logsms"
)

func TestSendWritesOneLine(t *testing.T) {
	var b strings.Builder
	p := logsms.New(&b)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"DOWN ACME: no return. Incident #abc", "RESOLVED Łódź. Incident #abc"} {
		if _, err := p.Send(context.Background(), delivery.Message{To: "+15555550100", Contact: "ACME on-call", Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	want := "SMS to ACME on-call +15555550100 [GSM-7 35/160]: DOWN ACME: no return. Incident #abc\n" +
		"SMS to ACME on-call +15555550100 [UCS-2 28/70]: RESOLVED Łódź. Incident #abc\n"
	if b.String() != want {
		t.Errorf("output\n%s\nwant\n%s", b.String(), want)
	}
	if err := logsms.New(nil).Validate(); err == nil {
		t.Error("a provider without a writer validated")
	}
}
