package replica

import "regexp"

// MaxNameLength is the longest deployment or service name.
const MaxNameLength = 40

// MaxContainerNameLength is containerd's limit on identifiers, which
// ContainerName must fit.
const MaxContainerNameLength = 76

// NameRule says what ValidName accepts, for error messages.
const NameRule = "use letters, digits, '-' and '_', starting and ending with a letter or digit, at most 40 characters"

// namePattern keeps names valid as containerd IDs, as path elements and as
// parts of every string form of an ID: no '/', '.', or control characters,
// separators only between letters and digits.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*$`)

// ValidName reports whether name is acceptable as a deployment or service name.
func ValidName(name string) bool {
	return len(name) <= MaxNameLength && namePattern.MatchString(name)
}
