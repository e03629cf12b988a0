package runtime_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/vigil-run/vigil/runtime"
)

// No block is the defaults: Podman's capabilities (none of NET_RAW, MKNOD,
// AUDIT_WRITE), no new privileges, the default profiles.
func TestDefaultSecurity(t *testing.T) {
	e := (*runtime.Security)(nil).Effective()
	if !e.NoNewPrivileges || e.Seccomp != runtime.ProfileDefault || e.AppArmor != runtime.ProfileDefault || e.ReadOnly || e.UserNS || e.User != "" {
		t.Errorf("defaults %+v", e)
	}
	if len(e.Capabilities) != 11 {
		t.Errorf("%d default capabilities %v, want Podman's 11", len(e.Capabilities), e.Capabilities)
	}
	for _, c := range []string{"CAP_NET_RAW", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SYS_ADMIN"} {
		if slices.Contains(e.Capabilities, c) {
			t.Errorf("the defaults hold %s", c)
		}
	}
	all := (&runtime.Security{CapAdd: []string{runtime.CapAll}, CapDrop: []string{"CAP_KILL"}}).Effective()
	if len(all.Capabilities) < 40 || !slices.Contains(all.Capabilities, "CAP_SYS_ADMIN") {
		t.Errorf("cap_add ALL gives %v", all.Capabilities)
	}
}

func TestSecurityValidate(t *testing.T) {
	for _, tc := range []struct {
		sec   runtime.Security
		field string
	}{
		{runtime.Security{User: "root"}, "user:"},
		{runtime.Security{User: "1:2:3"}, "user:"},
		{runtime.Security{User: "70000", UserNS: true}, "user:"},
		{runtime.Security{Tmpfs: []string{"/tmp/../etc"}}, "tmpfs[0]:"},
		{runtime.Security{CapAdd: []string{"net_raw"}}, "cap_add[0]:"},
		{runtime.Security{CapDrop: []string{"CAP_NOPE"}}, "cap_drop[0]:"},
		{runtime.Security{Seccomp: "profile.json"}, "seccomp:"},
		{runtime.Security{AppArmor: "a b"}, "apparmor:"},
	} {
		err := tc.sec.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.field) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v; want one line beginning %q", tc.sec, err, tc.field)
		}
	}
	if err := (&runtime.Security{User: "1000:1000", CapAdd: []string{"CAP_NET_RAW"}, CapDrop: []string{runtime.CapAll}, Seccomp: "/etc/p.json", AppArmor: "unconfined"}).Validate(); err != nil {
		t.Error(err)
	}
	for in, want := range map[string]string{"net_raw": "CAP_NET_RAW", "CAP_KILL": "CAP_KILL", " all ": "ALL"} {
		if got, err := runtime.ParseCapability(in); got != want || err != nil {
			t.Errorf("ParseCapability(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
