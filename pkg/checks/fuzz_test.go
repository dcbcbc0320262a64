package checks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/events"
)

// FuzzParse: any bytes either load or are refused with *Error values that
// each name the file; a file that loads holds only checks the services
// can run: valid ids, sites of the file, settings in range and contact
// numbers in E.164 that parse to themselves.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range seeds {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("sites: [a]\nchecks:\n  - {id: x, customer: c, kind: smtp, host: mail.example, port: 0}\n"))
	f.Add([]byte("sites: [a]\nchecks: [{id: x, customer: c, kind: roundtrip, target: p@q.example, contacts: [{name: n, phone: '+44 (0)20 7946 0018'}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data)
		if err != nil {
			if file != nil {
				t.Fatal("a file and an error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v holds no *Error", err, err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		sites := map[string]bool{}
		for _, s := range file.Sites {
			sites[s] = true
		}
		for _, c := range file.Checks {
			if !events.ValidToken(c.ID) || !events.ValidToken(c.Customer) || file.Lookup(c.ID) != c {
				t.Fatalf("check %+v", c)
			}
			if c.Interval < 1e9 || c.Timeout <= 0 || c.Slow <= 0 || c.Slow >= c.Timeout || c.Quorum < 1 || len(c.Sites) == 0 {
				t.Fatalf("check %s settings %+v, sites %v", c.ID, c.Settings, c.Sites)
			}
			for _, s := range c.Sites {
				if !sites[s] {
					t.Fatalf("check %s runs at %q, not a site of the file", c.ID, s)
				}
			}
			for _, ct := range c.Contacts {
				if again, err := PhoneNumber(ct.Phone); err != nil || again != ct.Phone {
					t.Fatalf("check %s contact %q: %q parses to %q, %v", c.ID, ct.Name, ct.Phone, again, err)
				}
			}
		}
	})
}

// FuzzPhoneNumber: a number is refused, or comes out in E.164 ("+" and at
// most 15 digits) and comes out the same when given again.
func FuzzPhoneNumber(f *testing.F) {
	for _, s := range []string{"+15555550100", "+44 (0)20 7946 0018", "+1 555 555 0100 ext. 12", "020 7946 0018", "+", "+9991234567", "+80012345678", "+49 30 1234567"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := PhoneNumber(s)
		if err != nil {
			if out != "" {
				t.Fatalf("%q: %q and %v", s, out, err)
			}
			return
		}
		digits := strings.TrimPrefix(out, "+")
		if len(out) == len(digits) || len(digits) < 4 || len(digits) > 15 || strings.Trim(digits, "0123456789") != "" {
			t.Fatalf("%q gave %q, not E.164", s, out)
		}
		if again, err := PhoneNumber(out); err != nil || again != out {
			t.Fatalf("%q gave %q, which gives %q, %v", s, out, again, err)
		}
	})
}
