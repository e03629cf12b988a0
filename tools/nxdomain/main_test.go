package main

import (
	"bytes"
	"testing"
)

// A TXT query with an EDNS0 record gets NXDOMAIN for the same question,
// with the same ID, and no records; a short or cut query gets nothing.
func TestNXDOMAIN(t *testing.T) {
	question := []byte("\x0c_grpc_config\x08temporal\x00\x00\x10\x00\x01")
	query := append([]byte{0x12, 0x34, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1}, question...)
	query = append(query, 0, 0, 0x29, 0x10, 0, 0, 0, 0, 0, 0, 0) // OPT
	got, err := nxdomain(query)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0}, question...)
	if !bytes.Equal(got, want) {
		t.Errorf("reply\n%x, want\n%x", got, want)
	}
	for _, bad := range [][]byte{query[:5], query[:20]} {
		if _, err := nxdomain(bad); err == nil {
			t.Errorf("%x: no error", bad)
		}
	}
}
