package stack

import (
	"os"
	"strings"
	"testing"
)

// make run's dev server (scripts/temporal-dev.sh) runs with the flags every
// test, bench and chaos run uses: what is measured is what users run.
func TestMakeRunUsesTheDevServerArgs(t *testing.T) {
	b, err := os.ReadFile("../../scripts/temporal-dev.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := strings.Join(strings.Fields(strings.ReplaceAll(string(b), "\\\n", " ")), " ")
	for i := 0; i+1 < len(DevServerArgs); i += 2 {
		flag := DevServerArgs[i] + " " + DevServerArgs[i+1]
		if !strings.Contains(script, flag) {
			t.Errorf("scripts/temporal-dev.sh does not pass %q; keep it and internal/stack.DevServerArgs the same", flag)
		}
	}
}
