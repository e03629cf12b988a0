package runtime

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/pkg/cap"
)

// Security is a container's confinement, the deployment file's security
// block; nil (and every zero field) is the default: the image's user, a
// writable root, no_new_privileges, DefaultCapabilities, containerd's
// default seccomp profile, the default AppArmor profile where AppArmor is
// on, and no user namespace.
type Security struct {
	// User is "uid" or "uid:gid" (default: the image's user).
	User     string `json:"user,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
	// Tmpfs are writable tmpfs mounts (absolute paths).
	Tmpfs []string `json:"tmpfs,omitempty"`
	// NoNewPrivileges is true when nil.
	NoNewPrivileges *bool `json:"no_new_privileges,omitempty"`
	// CapAdd and CapDrop change DefaultCapabilities; names are canonical
	// (CAP_NET_RAW) or CapAll. Drop goes first, then add.
	CapAdd  []string `json:"cap_add,omitempty"`
	CapDrop []string `json:"cap_drop,omitempty"`
	// Seccomp is ProfileDefault (also when empty), ProfileUnconfined or
	// the absolute path of a profile (JSON) on the node.
	Seccomp string `json:"seccomp,omitempty"`
	// AppArmor is ProfileDefault (also when empty), ProfileUnconfined or
	// the name of a profile loaded on the node; ignored where AppArmor is off.
	AppArmor string `json:"apparmor,omitempty"`
	// UserNS maps the container's IDs to an unprivileged host range
	// (container root is not host root).
	UserNS bool `json:"userns,omitempty"`
}

// UserNSSize is how many IDs a container with userns: true has (0 to
// UserNSSize-1), mapped to an unprivileged host range.
const UserNSSize = 65536

// Profile values of Seccomp and AppArmor.
const (
	ProfileDefault    = "default"
	ProfileUnconfined = "unconfined"
)

// CapAll in cap_add or cap_drop means every capability.
const CapAll = "ALL"

// DefaultCapabilities are Podman's: Docker's (and containerd's) fourteen
// less CAP_NET_RAW, CAP_MKNOD and CAP_AUDIT_WRITE.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
	"CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
}

// ParseCapability is the canonical name of a capability written with or
// without the CAP_ prefix, in any case, or CapAll.
func ParseCapability(name string) (string, error) {
	up := strings.ToUpper(strings.TrimSpace(name))
	if up == CapAll {
		return CapAll, nil
	}
	if !strings.HasPrefix(up, "CAP_") {
		up = "CAP_" + up
	}
	if !slices.Contains(cap.Known(), up) {
		return "", fmt.Errorf("%q is not a Linux capability; write e.g. NET_BIND_SERVICE or CAP_NET_BIND_SERVICE, or ALL", name)
	}
	return up, nil
}

// ParseUser checks a user written as uid or uid:gid.
func ParseUser(user string) (uid, gid uint32, hasGID bool, err error) {
	u, g, hasGID := strings.Cut(user, ":")
	id := func(s string) (uint32, bool) {
		// runc takes IDs up to MaxInt32.
		n, err := strconv.ParseUint(s, 10, 31)
		return uint32(n), err == nil
	}
	var ok bool
	if uid, ok = id(u); !ok {
		return 0, 0, false, fmt.Errorf("%q is not uid[:gid]; write numeric IDs, e.g. 1000 or 1000:1000", user)
	}
	if hasGID {
		if gid, ok = id(g); !ok {
			return 0, 0, false, fmt.Errorf("%q is not uid[:gid]; write numeric IDs, e.g. 1000 or 1000:1000", user)
		}
	}
	return uid, gid, hasGID, nil
}

// Validate checks the block; its errors begin with the field's name
// (relative to the block), e.g. "cap_add[1]: ...".
func (s *Security) Validate() error {
	if s == nil {
		return nil
	}
	if s.User != "" {
		uid, gid, _, err := ParseUser(s.User)
		if err != nil {
			return fmt.Errorf("user: %w", err)
		}
		if s.UserNS && max(uid, gid) >= UserNSSize {
			return fmt.Errorf("user: %q is outside the user namespace's IDs 0-%d (userns: true); pick IDs below %d", s.User, UserNSSize-1, UserNSSize)
		}
	}
	for i, t := range s.Tmpfs {
		if !path.IsAbs(t) || path.Clean(t) != t || t == "/" {
			return fmt.Errorf("tmpfs[%d]: %q is not an absolute, clean path below /; write e.g. /tmp", i, t)
		}
		if slices.Contains(s.Tmpfs[:i], t) {
			return fmt.Errorf("tmpfs[%d]: %q is listed twice; name each path once", i, t)
		}
	}
	for _, f := range []struct {
		field string
		caps  []string
	}{{"cap_add", s.CapAdd}, {"cap_drop", s.CapDrop}} {
		field := f.field
		for i, c := range f.caps {
			if canon, err := ParseCapability(c); err != nil || canon != c {
				return fmt.Errorf("%s[%d]: %q is not a capability's canonical name; write e.g. CAP_NET_BIND_SERVICE or ALL", field, i, c)
			}
		}
	}
	switch p := s.Seccomp; {
	case p == "", p == ProfileDefault, p == ProfileUnconfined:
	case !path.IsAbs(p):
		return fmt.Errorf("seccomp: %q is not %s, %s or an absolute path; write e.g. /etc/vigil/seccomp.json", p, ProfileDefault, ProfileUnconfined)
	}
	if strings.ContainsAny(s.AppArmor, " \t\n/") {
		return fmt.Errorf("apparmor: %q is not a profile name; write %s, %s or the name of a loaded profile", s.AppArmor, ProfileDefault, ProfileUnconfined)
	}
	return nil
}

// EffectiveSecurity is the confinement a container created from a spec
// gets, every default filled in (`vigil status --json`, under security).
type EffectiveSecurity struct {
	// User is empty for the image's user.
	User            string   `json:"user,omitempty"`
	ReadOnly        bool     `json:"read_only"`
	Tmpfs           []string `json:"tmpfs"`
	NoNewPrivileges bool     `json:"no_new_privileges"`
	// Capabilities are the bounding, effective and permitted sets, sorted.
	Capabilities []string `json:"capabilities"`
	Seccomp      string   `json:"seccomp"`
	AppArmor     string   `json:"apparmor"`
	UserNS       bool     `json:"userns"`
}

// Effective fills in the defaults.
func (s *Security) Effective() EffectiveSecurity {
	var in Security
	if s != nil {
		in = *s
	}
	e := EffectiveSecurity{
		User: in.User, ReadOnly: in.ReadOnly, Tmpfs: append([]string{}, in.Tmpfs...),
		NoNewPrivileges: in.NoNewPrivileges == nil || *in.NoNewPrivileges,
		Seccomp:         orDefault(in.Seccomp), AppArmor: orDefault(in.AppArmor), UserNS: in.UserNS,
	}
	caps := slices.Clone(DefaultCapabilities)
	if slices.Contains(in.CapDrop, CapAll) {
		caps = nil
	}
	caps = slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(in.CapDrop, c) })
	if slices.Contains(in.CapAdd, CapAll) {
		caps = slices.Clone(cap.Known())
	}
	for _, c := range in.CapAdd {
		if c != CapAll && !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	slices.Sort(caps)
	e.Capabilities = append([]string{}, caps...)
	return e
}

func orDefault(profile string) string {
	if profile == "" {
		return ProfileDefault
	}
	return profile
}
