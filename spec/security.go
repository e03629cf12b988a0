package spec

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vigil-run/vigil/runtime"
)

// securityFields are the fields of a service's security block.
var securityFields = []string{"user", "read_only", "tmpfs", "no_new_privileges", "cap_add", "cap_drop", "seccomp", "apparmor", "userns"}

// parseSecurity reads the security block; nil when absent or empty (the
// default confinement, runtime.Security).
func parseSecurity(n *yaml.Node, path string) (*runtime.Security, error) {
	if n == nil {
		return nil, nil
	}
	fields, err := mapping(n, path, securityFields)
	if err != nil {
		return nil, err
	}
	var s runtime.Security
	if un := fields["user"]; un != nil {
		if s.User, err = scalar(un, path+".user"); err != nil {
			return nil, err
		}
		if _, _, _, err := runtime.ParseUser(s.User); err != nil {
			return nil, fieldErr(un, path+".user", "%v", err)
		}
	}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"read_only", &s.ReadOnly}, {"userns", &s.UserNS}} {
		if bn := fields[f.name]; bn != nil {
			if *f.dst, err = boolean(bn, path+"."+f.name); err != nil {
				return nil, err
			}
		}
	}
	if nn := fields["no_new_privileges"]; nn != nil {
		v, err := boolean(nn, path+".no_new_privileges")
		if err != nil {
			return nil, err
		}
		s.NoNewPrivileges = &v
	}
	if tn := fields["tmpfs"]; tn != nil {
		items, err := sequence(tn, path+".tmpfs", "[/tmp]")
		if err != nil {
			return nil, err
		}
		for i, item := range items {
			ipath := fmt.Sprintf("%s.tmpfs[%d]", path, i)
			p, err := cleanPath(item, ipath, "the directory to mount a tmpfs on, e.g. /tmp")
			if err != nil {
				return nil, err
			}
			if p == "/" || slices.Contains(s.Tmpfs, p) {
				return nil, fieldErr(item, ipath, "%s is the root or listed twice; name each directory below / once", quote(p))
			}
			s.Tmpfs = append(s.Tmpfs, p)
		}
	}
	if s.CapAdd, err = capabilities(fields["cap_add"], path+".cap_add"); err != nil {
		return nil, err
	}
	if s.CapDrop, err = capabilities(fields["cap_drop"], path+".cap_drop"); err != nil {
		return nil, err
	}
	if sn := fields["seccomp"]; sn != nil {
		if s.Seccomp, err = scalar(sn, path+".seccomp"); err != nil {
			return nil, err
		}
		if s.Seccomp != runtime.ProfileDefault && s.Seccomp != runtime.ProfileUnconfined {
			if !strings.HasPrefix(s.Seccomp, "/") {
				return nil, fieldErr(sn, path+".seccomp", "%s is not default, unconfined or an absolute path; write e.g. /etc/vigil/seccomp.json", quote(s.Seccomp))
			}
			if s.Seccomp, err = cleanPath(sn, path+".seccomp", "the profile's path on the node"); err != nil {
				return nil, err
			}
		}
	}
	if an := fields["apparmor"]; an != nil {
		if s.AppArmor, err = scalar(an, path+".apparmor"); err != nil {
			return nil, err
		}
	}
	if err := s.Validate(); err != nil {
		// What the parse above lets through and the runtime refuses.
		field, msg, _ := strings.Cut(err.Error(), ": ")
		return nil, fieldErr(n, path+"."+field, "%s", msg)
	}
	if s.User == "" && !s.ReadOnly && len(s.Tmpfs) == 0 && s.NoNewPrivileges == nil && len(s.CapAdd) == 0 &&
		len(s.CapDrop) == 0 && s.Seccomp == "" && s.AppArmor == "" && !s.UserNS {
		return nil, nil
	}
	return &s, nil
}

// capabilities reads a list of capability names, with or without CAP_, into
// their canonical names.
func capabilities(n *yaml.Node, path string) ([]string, error) {
	if n == nil {
		return nil, nil
	}
	items, err := sequence(n, path, "[NET_BIND_SERVICE]")
	if err != nil {
		return nil, err
	}
	var caps []string
	for i, item := range items {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		v, err := scalar(item, ipath)
		if err != nil {
			return nil, err
		}
		c, err := runtime.ParseCapability(v)
		if err != nil {
			return nil, fieldErr(item, ipath, "%v", err)
		}
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps, nil
}
