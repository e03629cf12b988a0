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
