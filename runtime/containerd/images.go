package containerd

import (
	"context"
	"fmt"
	"io"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"

	"github.com/vigil-run/vigil/runtime"
)

// NormalizeImage turns "busybox" into "docker.io/library/busybox:latest".
func NormalizeImage(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image %q: %v; use a reference like docker.io/library/busybox:1.36", ref, err)
	}
	return named.String(), nil
}

// ensureImage finds or pulls the image per the pull policy and makes sure it
// is unpacked into the snapshotter.
func (r *Runtime) ensureImage(ctx context.Context, spec runtime.ContainerSpec) (containerd.Image, error) {
	ref, err := NormalizeImage(spec.Image)
	if err != nil {
		return nil, &Error{Op: "image", ID: spec.Image, Kind: runtime.ErrImageNotFound, Err: err}
	}
	var image containerd.Image
	switch spec.PullPolicy {
	case runtime.PullNever, runtime.PullIfNotPresent, "":
		image, err = r.client.GetImage(ctx, ref)
		if err == nil || !errdefs.IsNotFound(err) {
			break
		}
		if spec.PullPolicy == runtime.PullNever {
			return nil, &Error{Op: "image", ID: ref, Kind: runtime.ErrImageNotFound,
				Err: fmt.Errorf("not in containerd namespace %q and pull_policy is never; import it (ctr -n %s images import FILE) or allow pulling", r.cfg.Namespace, r.cfg.Namespace)}
		}
		image, err = r.pull(ctx, ref)
	case runtime.PullAlways:
		image, err = r.pull(ctx, ref)
	default:
		return nil, &Error{Op: "image", ID: ref, Kind: runtime.ErrImageNotFound,
			Err: fmt.Errorf("pull_policy %q: use always, if_not_present or never", spec.PullPolicy)}
	}
	if err != nil {
		return nil, wrap("image", ref, err, runtime.ErrImageNotFound)
	}
	if err := verifyDigest(ref, image); err != nil {
		return nil, err
	}
	unpacked, err := image.IsUnpacked(ctx, r.cfg.Snapshotter)
	if err != nil {
		return nil, wrap("unpack", ref, err, runtime.ErrImageNotFound)
	}
	if !unpacked {
		if err := image.Unpack(ctx, r.cfg.Snapshotter); err != nil {
			return nil, wrap("unpack", ref, err, runtime.ErrImageNotFound)
		}
	}
	return image, nil
}

// pull fetches the image (the caller unpacks it) through containerd with
// the node's registry config. A pull that receives nothing for the stall
// timeout is cancelled (ErrImagePullStalled); progress reports the bytes
// received so far, for status, while it runs.
func (r *Runtime) pull(ctx context.Context, ref string) (containerd.Image, error) {
	got := r.pulls.start(ref)
	defer r.pulls.done(ref)
	resolver, err := r.resolver(ctx, got)
	if err != nil {
		return nil, &Error{Op: "pull", ID: ref, Err: err}
	}
	opts := []containerd.RemoteOpt{containerd.WithResolver(resolver)}
	if r.cfg.Snapshotter != "" {
		opts = append(opts, containerd.WithPullSnapshotter(r.cfg.Snapshotter))
	}
	pullCtx, stop := watchStall(ctx, got, r.cfg.Registry.StallTimeout)
	defer stop()
	image, err := r.client.Pull(pullCtx, ref, opts...)
	if err != nil {
		return nil, r.pullError(pullCtx, ref, err)
	}
	return image, nil
}

// verifyDigest makes sure an image pinned by digest (name@sha256:...) is
// that manifest. containerd checks each blob it fetches against the digest
// it asked for; this checks that what it stored under the name is the pin.
func verifyDigest(ref string, image containerd.Image) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil // NormalizeImage checked it
	}
	pinned, ok := named.(reference.Digested)
	if !ok || image.Target().Digest == pinned.Digest() {
		return nil
	}
	return &Error{Op: "image", ID: ref, Kind: runtime.ErrImageNotFound,
		Err: fmt.Errorf("its manifest is %s, not the pinned digest; pull it again (pull_policy: always) or pin the digest the registry serves", image.Target().Digest)}
}

// ImportImage imports an OCI image layout or docker-archive tar (as written
// by `docker save`, `ctr images export` or tools/mkimage), unpacks it, and
// returns the names of the imported images.
func (r *Runtime) ImportImage(ctx context.Context, tar io.Reader) ([]string, error) {
	ctx = r.nsCtx(ctx)
	imgs, err := r.client.Import(ctx, tar, containerd.WithImageRefTranslator(func(name string) string {
		full, err := NormalizeImage(name)
		if err != nil {
			return ""
		}
		return full
	}))
	if err != nil {
		return nil, wrap("import", "image", err, nil)
	}
	var names []string
	for _, img := range imgs {
		image := containerd.NewImage(r.client, img)
		if err := image.Unpack(ctx, r.cfg.Snapshotter); err != nil {
			return nil, wrap("unpack", img.Name, err, nil)
		}
		names = append(names, img.Name)
	}
	return names, nil
}

// HasImage reports whether the image is present in the runtime's namespace.
func (r *Runtime) HasImage(ctx context.Context, ref string) (bool, error) {
	full, err := NormalizeImage(ref)
	if err != nil {
		return false, err
	}
	_, err = r.client.ImageService().Get(r.nsCtx(ctx), full)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, wrap("image", full, err, nil)
}
