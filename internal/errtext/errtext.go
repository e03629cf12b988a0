// Package errtext shapes the text of errors shown to operators: one line,
// and file errors without the path the caller names anyway.
package errtext

import (
	"errors"
	"os"
	"strings"
	"unicode/utf8"
)

// OneLine collapses whitespace, line breaks included, so every error fits on one line.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// WithoutPath drops the path from file system errors; the caller names the file.
func WithoutPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Short is s on one line (OneLine), cut to at most max bytes, ending in "…"
// when cut; never in the middle of a character.
func Short(s string, max int) string {
	s = OneLine(s)
	if len(s) <= max {
		return s
	}
	const ellipsis = "…"
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
