// Package humanjson is Vigil's JSON payload converter for Temporal: the
// SDK's own JSON, except that every time.Duration is written the way a
// deployment file writes it ("60s", "5m") instead of in nanoseconds
// (60000000000), so workflow inputs, query answers and results read well in
// the Web UI and in `temporal workflow show`. Decoding accepts both forms
// (workflows/versions.go says which histories hold integers).
//
// Durations are found through the Go type being encoded or decoded, so no
// field changes type. A duration inside an interface value (any) is not
// seen and stays a number.
package humanjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// DataConverter is the SDK's default data converter with this JSON converter.
func DataConverter() converter.DataConverter {
	return converter.NewCompositeDataConverter(
		converter.NewNilPayloadConverter(),
		converter.NewByteSlicePayloadConverter(),
		converter.NewProtoJSONPayloadConverter(),
		converter.NewProtoPayloadConverter(),
		NewPayloadConverter(),
	)
}

// PayloadConverter is converter.JSONPayloadConverter with human durations.
type PayloadConverter struct {
	*converter.JSONPayloadConverter
}

// NewPayloadConverter returns the converter.
func NewPayloadConverter() *PayloadConverter {
	return &PayloadConverter{converter.NewJSONPayloadConverter()}
}

// ToPayload encodes value as JSON with its durations as text.
func (c *PayloadConverter) ToPayload(value any) (*commonpb.Payload, error) {
	p, err := c.JSONPayloadConverter.ToPayload(value)
	if err != nil || p == nil || value == nil || !hasDuration(reflect.TypeOf(value)) {
		return p, err
	}
	data, err := rewrite(p.Data, reflect.TypeOf(value), toText)
	if err != nil {
		return nil, fmt.Errorf("humanjson: %w", err)
	}
	p.Data = data
	return p, nil
}

// FromPayload decodes JSON whose durations are text or nanoseconds.
func (c *PayloadConverter) FromPayload(p *commonpb.Payload, valuePtr any) error {
	t := reflect.TypeOf(valuePtr)
	if p != nil && t != nil && t.Kind() == reflect.Pointer && hasDuration(t.Elem()) {
		data, err := rewrite(p.Data, t.Elem(), toNanos)
		if err != nil {
			return fmt.Errorf("humanjson: %w", err)
		}
		p = proto.Clone(p).(*commonpb.Payload)
		p.Data = data
	}
	return c.JSONPayloadConverter.FromPayload(p, valuePtr)
}

// ToString shows the payload as JSON text (as the SDK's converter does).
func (c *PayloadConverter) ToString(p *commonpb.Payload) string {
	return c.JSONPayloadConverter.ToString(p)
}

// Format writes d as a deployment file would: 60s, 5m, 1h30m, 1.5s.
func Format(d time.Duration) string {
	if d%time.Second == 0 && d > -100*time.Second && d < 100*time.Second {
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}
	s := d.String() // 1h30m0s, 10m0s, 2h0m0s, 1.5s
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

var durationType = reflect.TypeFor[time.Duration]()

func toText(v any) (any, error) {
	n, ok := v.(json.Number)
	if !ok {
		return v, nil
	}
	i, err := n.Int64()
	if err != nil {
		return nil, fmt.Errorf("duration %s is not a whole number of nanoseconds", n)
	}
	return Format(time.Duration(i)), nil
}

func toNanos(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return v, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("duration %q: %v", s, err)
	}
	return json.Number(fmt.Sprint(int64(d))), nil
}

// rewrite applies f to every duration of a JSON document of type t.
func rewrite(data []byte, t reflect.Type, f func(any) (any, error)) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, err
	}
	tree, err := walk(tree, t, f)
	if err != nil {
		return nil, err
	}
	return json.Marshal(tree)
}

// walk follows t through the decoded JSON v.
func walk(v any, t reflect.Type, f func(any) (any, error)) (any, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return f(v)
	}
	var err error
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return v, nil
		}
		for _, fl := range fields(t) {
			if x, ok := m[fl.name]; ok {
				if m[fl.name], err = walk(x, fl.typ, f); err != nil {
					return nil, err
				}
			}
		}
	case reflect.Slice, reflect.Array:
		s, ok := v.([]any)
		if !ok {
			return v, nil
		}
		for i := range s {
			if s[i], err = walk(s[i], t.Elem(), f); err != nil {
				return nil, err
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return v, nil
		}
		for k, x := range m {
			if m[k], err = walk(x, t.Elem(), f); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

type field struct {
	name string
	typ  reflect.Type
}

// fields are the JSON fields of struct t, embedded structs flattened, as
// encoding/json names them (the first of a name wins, as it does there for
// the shallowest field).
func fields(t reflect.Type) []field {
	var out []field
	seen := map[string]bool{}
	var add func(reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := sf.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if sf.Anonymous && name == "" && ft.Kind() == reflect.Struct {
				add(ft)
				continue
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			if !seen[name] {
				seen[name] = true
				out = append(out, field{name, sf.Type})
			}
		}
	}
	add(t)
	return out
}

var hasCache sync.Map // reflect.Type -> bool

// hasDuration reports whether a value of type t can hold a duration.
func hasDuration(t reflect.Type) bool {
	if v, ok := hasCache.Load(t); ok {
		return v.(bool)
	}
	has := search(t, map[reflect.Type]bool{})
	hasCache.Store(t, has)
	return has
}

func search(t reflect.Type, visiting map[reflect.Type]bool) bool {
	if t == durationType {
		return true
	}
	if visiting[t] {
		return false
	}
	visiting[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		return search(t.Elem(), visiting)
	case reflect.Struct:
		for _, f := range fields(t) {
			if search(f.typ, visiting) {
				return true
			}
		}
	}
	return false
}
