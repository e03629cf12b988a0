package runtime

import "fmt"

// PullFailed is a pull the registry or the way to it made fail: Kind is
// ErrImagePullUnauthorized or ErrImagePullStalled, and the text begins
// with the kind, so the replica shows it as its start error as it is.
type PullFailed struct {
	Kind  error
	Image string
	// Why says what happened and what to do, e.g. "... refused the node's
	// credentials; set them in --registry-config".
	Why string
}

func (e *PullFailed) Error() string { return fmt.Sprintf("%v: pull %s: %s", e.Kind, e.Image, e.Why) }

// Is makes a PullFailed its Kind.
func (e *PullFailed) Is(target error) bool { return target == e.Kind }
