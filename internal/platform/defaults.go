package platform

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Defaults returns the T that an empty environment gives: every field set
// to its envDefault tag (github.com/caarlos0/env), required fields left
// zero. The envDefault tags are the one place each default of a service's
// Config is written; the service's Defaults(), `scout dev`, the
// configuration reference's test and FillDefaults read them from there.
func Defaults[T any]() T {
	var cfg T
	params, err := env.GetFieldParams(&cfg)
	if err != nil {
		panic(fmt.Sprintf("platform.Defaults: %T has malformed env tags: %v", cfg, err)) // a programming error, caught by every test
	}
	vars := map[string]string{}
	for _, p := range params {
		if p.HasDefaultValue {
			vars[p.Key] = p.DefaultValue
		}
	}
	// Required variables are missing by design; every other field is set.
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		var agg env.AggregateError
		if !errors.As(err, &agg) {
			panic(fmt.Sprintf("platform.Defaults: %T: %v", cfg, err))
		}
		for _, e := range agg.Errors {
			var missing env.VarIsNotSetError
			if !errors.As(e, &missing) {
				panic(fmt.Sprintf("platform.Defaults: %T: a default does not parse: %v", cfg, e))
			}
		}
	}
	return cfg
}

// Variables returns every environment variable of T's env tags with its
// default as written in the tag ("2m", "8", "relay"), and whether it has
// one: what the configuration reference documents, and its test reads.
func Variables[T any]() map[string]Variable {
	var cfg T
	params, err := env.GetFieldParams(&cfg)
	if err != nil {
		panic(fmt.Sprintf("platform.Variables: %T has malformed env tags: %v", cfg, err))
	}
	out := map[string]Variable{}
	for _, p := range params {
		out[p.Key] = Variable{Default: p.DefaultValue, HasDefault: p.HasDefaultValue, Required: p.Required}
	}
	return out
}

// Variable is one environment variable of a configuration.
type Variable struct {
	Default    string
	HasDefault bool
	Required   bool
}

// FillDefaults sets every zero field of cfg that has an envDefault tag to
// the tag's default, so that a Config built in code (tests, `scout dev`)
// needs only the fields it cares about. A field whose zero is a setting of
// its own (SCOUT_CLICKHOUSE_TTL_DAYS=0 keeps everything) is tagged
// `zero:"setting"` and left alone, as is every bool (false is always a
// choice: start from Defaults() to get a bool's default). cfg must be a
// pointer to a struct.
func FillDefaults[T any](cfg *T) {
	def := Defaults[T]()
	fill(reflect.ValueOf(cfg).Elem(), reflect.ValueOf(def))
}

func fill(dst, def reflect.Value) {
	t := dst.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		d, v := def.Field(i), dst.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" && f.Type.String() != "time.Time" {
			fill(v, d)
			continue
		}
		if f.Tag.Get("envDefault") == "" || f.Tag.Get("zero") == "setting" || f.Type.Kind() == reflect.Bool || !v.IsZero() {
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" {
			v.Set(d)
		}
	}
}
