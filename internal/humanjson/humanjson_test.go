package humanjson

import (
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
)

type inner struct {
	Every time.Duration `json:"every"`
}

type Embedded struct {
	Grace time.Duration `json:"grace,omitempty"`
}

type doc struct {
	Embedded
	Window  time.Duration            `json:"window"`
	Ptr     *time.Duration           `json:"ptr"`
	List    []inner                  `json:"list"`
	ByName  map[string]time.Duration `json:"by_name"`
	Count   int                      `json:"count"`
	Skipped time.Duration            `json:"-"`
	Any     any                      `json:"any"`
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		60 * time.Second: "60s", 0: "0s", 1500 * time.Millisecond: "1.5s", 5 * time.Minute: "5m",
		10 * time.Minute: "10m", 90 * time.Minute: "1h30m", 2 * time.Hour: "2h", 24 * time.Hour: "24h",
		100 * time.Millisecond: "100ms", 3*time.Minute + 7*time.Second: "3m7s",
	} {
		if got := Format(d); got != want {
			t.Errorf("Format(%d) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(Format(d)); err != nil || back != d {
			t.Errorf("ParseDuration(%q) = %v, %v", Format(d), back, err)
		}
	}
}

// Durations are written as text wherever the type has one, and read back
// from text or from v0.1.0's nanoseconds.
func TestRoundTripAndOldPayloads(t *testing.T) {
	c := NewPayloadConverter()
	p30 := 30 * time.Second
	in := doc{Embedded: Embedded{Grace: 10 * time.Second}, Window: time.Minute, Ptr: &p30,
		List: []inner{{Every: 24 * time.Hour}}, ByName: map[string]time.Duration{"a": 5 * time.Minute}, Count: 7, Any: 3}
	p, err := c.ToPayload(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"grace":"10s"`, `"window":"60s"`, `"ptr":"30s"`, `"every":"24h"`, `"a":"5m"`, `"count":7`, `"any":3`} {
		if !strings.Contains(string(p.Data), want) {
			t.Errorf("payload %s lacks %s", p.Data, want)
		}
	}
	var out doc
	if err := c.FromPayload(p, &out); err != nil {
		t.Fatal(err)
	}
	if out.Grace != in.Grace || out.Window != in.Window || *out.Ptr != p30 || out.List[0].Every != 24*time.Hour || out.ByName["a"] != 5*time.Minute || out.Count != 7 {
		t.Errorf("round trip: %+v", out)
	}

	// A v0.1.0 payload: the SDK's own JSON, nanoseconds.
	old, err := converter.NewJSONPayloadConverter().ToPayload(in)
	if err != nil {
		t.Fatal(err)
	}
	var fromOld doc
	if err := c.FromPayload(old, &fromOld); err != nil || fromOld.Window != time.Minute || fromOld.List[0].Every != 24*time.Hour {
		t.Errorf("old payload %s: %+v, %v", old.Data, fromOld, err)
	}

	var bad doc
	p.Data = []byte(`{"window":"sixty seconds"}`)
	if err := c.FromPayload(p, &bad); err == nil || !strings.Contains(err.Error(), `duration "sixty seconds"`) {
		t.Errorf("bad duration: %v", err)
	}
}
