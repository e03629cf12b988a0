package errtext

import (
	"errors"
	"os"
	"testing"
)

func TestOneLine(t *testing.T) {
	if got := OneLine("  a\n\tb \r\n c  "); got != "a b c" {
		t.Errorf("got %q", got)
	}
}

func TestWithoutPath(t *testing.T) {
	_, err := os.Open("/no/such/file")
	got := WithoutPath(err)
	if !errors.Is(got, os.ErrNotExist) || got.Error() != "no such file or directory" {
		t.Errorf("got %v", got)
	}
	other := errors.New("x")
	if WithoutPath(other) != other {
		t.Error("a non-path error changed")
	}
}

func TestShort(t *testing.T) {
	if got := Short("a\nb", 10); got != "a b" {
		t.Errorf("got %q", got)
	}
	got := Short("héllo", 5) // the cut falls inside é
	if got != "h…" || len(got) > 5 {
		t.Errorf("got %q (%d bytes)", got, len(got))
	}
}
