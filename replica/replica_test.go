package replica

import (
	"strconv"
	"strings"
	"testing"
)

func TestStringForms(t *testing.T) {
	id := ID{Deployment: "shop", Service: "api", Replica: 2}
	for got, want := range map[string]string{
		id.String():        "api-rep-2",
		id.Ref():           "shop/api-rep-2",
		id.WorkflowID():    "vigil/shop/api-rep-2",
		id.ContainerName(): "shop.api-rep-2",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestParseRefRoundTrips(t *testing.T) {
	id := ID{Deployment: "shop", Service: "my-api_2", Replica: 12}
	for _, s := range []string{id.Ref(), id.WorkflowID()} {
		got, err := ParseRef(s)
		if err != nil || got != id {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", s, got, err, id)
		}
	}
	for _, bad := range []string{"", "shop", "shop/api", "shop/api-rep-0", "shop/api-rep-x", "a/b/api-rep-1", "shop.api-rep-1"} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "api", "my-api_2", strings.Repeat("a", MaxNameLength)} {
		if !ValidName(ok) {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "a--b", "a.b", "a/b", "a b", "é", strings.Repeat("a", MaxNameLength+1)} {
		if ValidName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// NameRule, shown in errors, states the length ValidName enforces.
func TestNameRuleStatesLength(t *testing.T) {
	if !strings.Contains(NameRule, "at most "+strconv.Itoa(MaxNameLength)+" characters") {
		t.Errorf("NameRule %q does not state MaxNameLength %d", NameRule, MaxNameLength)
	}
}
