package platform_test

import (
	"testing"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
)

type sampleConfig struct {
	Name     string        `env:"X_NAME,required"`
	Workers  int           `env:"X_WORKERS" envDefault:"8"`
	Wait     time.Duration `env:"X_WAIT" envDefault:"2m"`
	KeepDays int           `env:"X_KEEP_DAYS" envDefault:"400" zero:"setting"`
	Mode     string        `env:"X_MODE" envDefault:"relay"`
	On       bool          `env:"X_ON" envDefault:"true"`
	NoDef    string        `env:"X_NODEF"`
	Nested   struct {
		Port int `env:"PORT" envDefault:"25"`
	} `envPrefix:"X_"`
}

func TestDefaultsFromTags(t *testing.T) {
	d := platform.Defaults[sampleConfig]()
	if d.Name != "" || d.Workers != 8 || d.Wait != 2*time.Minute || d.KeepDays != 400 || d.Mode != "relay" || !d.On || d.NoDef != "" || d.Nested.Port != 25 {
		t.Errorf("Defaults = %+v", d)
	}
	vars := platform.Variables[sampleConfig]()
	if v := vars["X_WAIT"]; !v.HasDefault || v.Default != "2m" {
		t.Errorf("X_WAIT = %+v", v)
	}
	if v := vars["X_NAME"]; !v.Required || v.HasDefault {
		t.Errorf("X_NAME = %+v", v)
	}
	if v, ok := vars["X_PORT"]; !ok || v.Default != "25" {
		t.Errorf("nested X_PORT = %+v, %v", v, ok)
	}
}

// TestFillDefaults: zero fields take the tag's default, set fields stay,
// and a field whose zero is a setting (or a bool) keeps its zero.
func TestFillDefaults(t *testing.T) {
	c := sampleConfig{Name: "a", Workers: 2, KeepDays: 0}
	platform.FillDefaults(&c)
	if c.Name != "a" || c.Workers != 2 || c.Wait != 2*time.Minute || c.KeepDays != 0 || c.Mode != "relay" || c.On || c.Nested.Port != 25 {
		t.Errorf("FillDefaults = %+v", c)
	}
}
