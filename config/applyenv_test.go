package config

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestApplyEnv(t *testing.T) {
	env := map[string]string{"name": "X_NAME", "count": "X_COUNT", "given": "X_GIVEN", "skipped": "X_SKIPPED"}
	vars := map[string]string{"X_NAME": "from-env", "X_COUNT": "7", "X_GIVEN": "from-env", "X_SKIPPED": "from-env"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	name, given, skipped := fs.String("name", "default", ""), fs.String("given", "default", ""), fs.String("skipped", "default", "")
	count := fs.Int("count", 1, "")
	if err := fs.Parse([]string{"--given", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fs, env, lookup, "skipped"); err != nil {
		t.Fatal(err)
	}
	if *name != "from-env" || *count != 7 || *given != "from-flag" || *skipped != "default" {
		t.Errorf("name=%q count=%d given=%q skipped=%q", *name, *count, *given, *skipped)
	}

	vars["X_COUNT"] = "secret-ish"
	fs = pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.Int("count", 1, "")
	err := ApplyEnv(fs, env, lookup)
	if err == nil || !strings.Contains(err.Error(), "X_COUNT") || !strings.Contains(err.Error(), "--count") || strings.Contains(err.Error(), "secret-ish") {
		t.Errorf("invalid value: %v", err)
	}
}
