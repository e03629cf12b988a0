package spec

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FieldError is a deployment file error: one line naming the field, what is
// wrong, and the fix.
type FieldError struct {
	// File is the deployment file's path, when known.
	File string
	// Line is the 1-based line of the offending node, or 0 when unknown.
	Line int
	// Path is the field's full path, e.g. "services.api.scale.replicas", or
	// "file"/"document" for errors about the file as a whole.
	Path string
	// Msg says what is wrong and how to fix it.
	Msg string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Path + ": " + e.Msg)
	return b.String()
}

// plainSegment is a path segment that can be printed without quoting.
var plainSegment = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// join appends a key to a field path, quoting keys that could break the
// one-line error format or be confused with the separator.
func join(path, key string) string {
	if !plainSegment.MatchString(key) {
		key = quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// quote renders user input for an error message: Go-quoted (so control
// characters and newlines stay escaped) and cut short if long.
func quote(s string) string {
	const max = 60
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}
