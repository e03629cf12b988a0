package lease

import (
	"errors"
	"io/fs"
	"testing"
	"time"
)

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no lease yet: %v; want fs.ErrNotExist", err)
	}
	l := Lease{Node: "node-b", Sent: Now(), At: time.Now().UTC()}
	if err := Write(dir, l); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil || got.Sent != l.Sent || got.Node != l.Node || !got.At.Equal(l.At) {
		t.Fatalf("read %+v, %v; want %+v", got, err, l)
	}
	if a := got.Age(); a < 0 || a > time.Minute {
		t.Fatalf("age %s just after writing", a)
	}
}

func TestFenceAfter(t *testing.T) {
	for lost, want := range map[time.Duration]time.Duration{
		15 * time.Second: 10 * time.Second, // the margin's floor
		30 * time.Second: 24 * time.Second, // a fifth
		time.Hour:        48 * time.Minute,
	} {
		if got := FenceAfter(lost); got != want {
			t.Errorf("FenceAfter(%s) = %s; want %s", lost, got, want)
		}
	}
}
