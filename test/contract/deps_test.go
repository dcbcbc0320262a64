package contract

import (
	"os/exec"
	"strings"
	"testing"
)

// TestReflectorLinksNoCheckFileParser: scout-reflector runs once per
// probe from a .forward line, so its start costs CPU on the customer's
// server for every probe: it must not link the check file's parser, whose
// phone-number metadata (and protobuf under it) costs about 25 ms of CPU
// at every start (docs/architecture.md, pkg/probe).
func TestReflectorLinksNoCheckFileParser(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/emailscout/emailscout/cmd/scout-reflector").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, banned := range []string{"github.com/emailscout/emailscout/pkg/checks", "github.com/nyaruka/phonenumbers", "google.golang.org/protobuf/proto"} {
		for _, dep := range strings.Fields(string(out)) {
			if dep == banned {
				t.Errorf("scout-reflector links %s", banned)
			}
		}
	}
}
