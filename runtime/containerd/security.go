package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/contrib/apparmor"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	pkgapparmor "github.com/containerd/containerd/v2/pkg/apparmor"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vigil-run/vigil/runtime"
)

// AppArmorProfile is the profile `apparmor: default` loads (containerd's
// default template, as Docker's docker-default) where AppArmor is on.
const AppArmorProfile = "vigil-default"

// UserNSHostID is the first host ID a container with userns: true maps its
// IDs to (runtime.UserNSSize of them): far above any host user's, and below
// runc's limit of MaxInt32.
const UserNSHostID = 1 << 30

// AppArmorSupported reports whether this host enforces AppArmor: where it
// does not, the apparmor setting of a security block is ignored (the
// worker says so when it starts).
func AppArmorSupported() bool { return pkgapparmor.HostSupports() }

// userNSMaps are the ID mappings of a container with userns: true.
func userNSMaps() []specs.LinuxIDMapping {
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: UserNSHostID, Size: runtime.UserNSSize}}
}

// snapshotOpt makes the container's root filesystem: owned by the mapped
// IDs with userns (a remapped copy of the image, shared by such containers).
func snapshotOpt(name string, image containerd.Image, sec *runtime.Security) containerd.NewContainerOpts {
	if sec != nil && sec.UserNS {
		return containerd.WithUserNSRemappedSnapshot(name, image, userNSMaps(), userNSMaps())
	}
	return containerd.WithNewSnapshot(name, image)
}

// securityOpts confine the container as its security block says, every
// default filled in (runtime.Security.Effective). They go after the
// image's config, whose user they override. A seccomp profile file that
// cannot be read is ErrInvalidSpec.
func securityOpts(sec *runtime.Security) ([]oci.SpecOpts, error) {
	e := sec.Effective()
	var opts []oci.SpecOpts
	if e.User != "" {
		opts = append(opts, oci.WithUser(e.User))
	}
	if e.ReadOnly {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if len(e.Tmpfs) > 0 {
		mounts := make([]specs.Mount, 0, len(e.Tmpfs))
		for _, dir := range e.Tmpfs {
			// Docker's and Podman's tmpfs options.
			mounts = append(mounts, specs.Mount{Destination: dir, Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "mode=1777"}})
		}
		opts = append(opts, oci.WithMounts(mounts))
	}
	if e.NoNewPrivileges {
		opts = append(opts, oci.WithNoNewPrivileges)
	} else {
		opts = append(opts, oci.WithNewPrivileges)
	}
	// Capabilities before seccomp: the default profile allows the system
	// calls of the capabilities the container holds.
	opts = append(opts, oci.WithCapabilities(e.Capabilities))
	switch e.Seccomp {
	case runtime.ProfileDefault:
		opts = append(opts, seccomp.WithDefaultProfile())
	case runtime.ProfileUnconfined:
		opts = append(opts, withoutSeccomp)
	default:
		// Read here, so that a missing or broken file is the spec's fault.
		b, err := os.ReadFile(e.Seccomp)
		if err == nil && !json.Valid(b) {
			err = fmt.Errorf("not JSON")
		}
		if err != nil {
			return nil, fmt.Errorf("security.seccomp: profile %s: %v; put a seccomp profile (JSON) there on the node or use default: %w", e.Seccomp, err, runtime.ErrInvalidSpec)
		}
		opts = append(opts, seccomp.WithProfile(e.Seccomp))
	}
	if AppArmorSupported() {
		switch e.AppArmor {
		case runtime.ProfileDefault:
			opts = append(opts, withAppArmorDefault)
		default:
			opts = append(opts, apparmor.WithProfile(e.AppArmor))
		}
	}
	if e.UserNS {
		opts = append(opts, oci.WithUserNamespace(userNSMaps(), userNSMaps()))
	}
	return opts, nil
}

// withAppArmorDefault loads the default profile (once per host) and
// applies it; loading needs CAP_MAC_ADMIN, which a least-privilege worker
// lacks (README).
func withAppArmorDefault(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
	if err := apparmor.WithDefaultProfile(AppArmorProfile)(ctx, client, c, s); err != nil {
		return fmt.Errorf("security.apparmor: loading the default profile %s: %w; run the worker as root (loading needs CAP_MAC_ADMIN), load it beforehand, or set apparmor: unconfined", AppArmorProfile, err)
	}
	return nil
}

func withoutSeccomp(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Linux != nil {
		s.Linux.Seccomp = nil
	}
	return nil
}
