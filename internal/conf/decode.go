package conf

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Describe shows a decoded value in an error message: strings quoted, nothing as "nothing".
func Describe(x any) string {
	switch x := x.(type) {
	case string:
		return strconv.Quote(x)
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("%v", x)
	}
}

// Set decodes raw (as the file, the environment or a flag gave it) into the field of key. An empty list or
// mapping ("[]", "{}" in a file) means the same as the default, nil. A string goes to a field that reads text
// itself (encoding.TextUnmarshaler: the rate stages' compact form); a slice of structs is a list of mappings of
// their fields' keys.
func Set(key string, f reflect.Value, raw any) error {
	if s, ok := raw.(string); ok {
		if u, ok := f.Addr().Interface().(encoding.TextUnmarshaler); ok {
			if err := u.UnmarshalText([]byte(s)); err != nil {
				return Errorf(key, "%v", err)
			}
			return nil
		}
	}
	if f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct {
		return setList(key, f, raw)
	}
	decode, ok := decoders[f.Type()]
	if !ok {
		return Errorf(key, "internal: unsupported field type %s", f.Type())
	}
	v, err := decode(raw)
	if err != nil {
		return Errorf(key, "%v", err)
	}
	rv := reflect.ValueOf(v)
	if k := rv.Kind(); (k == reflect.Slice || k == reflect.Map) && rv.Len() == 0 {
		rv = reflect.Zero(f.Type())
	}
	f.Set(rv)
	return nil
}

// setList decodes a list of mappings into a slice of structs whose fields carry key tags; each item's keys are
// checked and decoded as the section's are, the item's index in the key ("scheduler.rate.stages[1].target").
func setList(key string, f reflect.Value, raw any) error {
	var names []string
	for i := range f.Type().Elem().NumField() {
		names = append(names, f.Type().Elem().Field(i).Tag.Get("key"))
	}
	shape := "{" + strings.Join(names, ", ") + "}"
	list, ok := raw.([]any)
	if !ok {
		return Errorf(key, "must be a list of %s, got %s", shape, Describe(raw))
	}
	out := reflect.MakeSlice(f.Type(), len(list), len(list))
	for i, item := range list {
		ik := fmt.Sprintf("%s[%d]", key, i)
		m, ok := item.(map[string]any)
		if !ok {
			return Errorf(ik, "must be a mapping %s, got %s", shape, Describe(item))
		}
		seen := map[string]bool{}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			j := slices.Index(names, strings.ToLower(k))
			if j < 0 {
				return Errorf(ik+"."+k, "unknown key")
			}
			if err := Set(ik+"."+names[j], out.Index(i).Field(j), m[k]); err != nil {
				return err
			}
			seen[names[j]] = true
		}
		for _, n := range names {
			if !seen[n] {
				return Errorf(ik+"."+n, "missing")
			}
		}
	}
	f.Set(out)
	return nil
}

// decoders read a raw value as each type of field the configuration has; an error says what the value must be.
var decoders = map[reflect.Type]func(raw any) (any, error){
	reflect.TypeFor[string]():            decoder(toString),
	reflect.TypeFor[bool]():              decoder(toBool),
	reflect.TypeFor[int]():               decoder(toInt),
	reflect.TypeFor[float64]():           decoder(toFloat),
	reflect.TypeFor[time.Duration]():     decoder(toDuration),
	reflect.TypeFor[[]string]():          decoder(toStrings),
	reflect.TypeFor[map[string]string](): decoder(toStringMap),
	reflect.TypeFor[ByteSize]():          decoder(toByteSize),
}

func decoder[T any](f func(raw any) (T, error)) func(raw any) (any, error) {
	return func(raw any) (any, error) { return f(raw) }
}

func toString(raw any) (string, error) {
	switch x := raw.(type) {
	case string:
		return x, nil
	case map[string]any, nil:
		return "", fmt.Errorf("must be a string, got %s", Describe(raw))
	case []any:
		return "", errors.New("must be a string, got a list")
	}
	return fmt.Sprint(raw), nil
}

// toByteSize reads a size: a non-negative integer of bytes or a number with a unit (ParseByteSize).
func toByteSize(raw any) (ByteSize, error) {
	if n, ok := raw.(int); ok {
		raw = int64(n)
	}
	switch x := raw.(type) {
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("must not be negative, got %d", x)
		}
		return ByteSize(x), nil
	case string:
		return ParseByteSize(x)
	}
	return 0, fmt.Errorf("must be a size such as \"512MiB\" or \"20GB\", got %s", Describe(raw))
}

func toBool(raw any) (bool, error) {
	switch x := raw.(type) {
	case bool:
		return x, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(x))
		if err == nil {
			return b, nil
		}
	}
	return false, fmt.Errorf("must be true or false, got %s", Describe(raw))
}

func toInt(raw any) (int, error) {
	switch x := raw.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case int32:
		return int(x), nil
	case uint64:
		if x <= math.MaxInt32 {
			return int(x), nil
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) <= math.MaxInt32 {
			return int(x), nil
		}
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("must be an integer, got %s", Describe(raw))
}

func toFloat(raw any) (float64, error) {
	switch x := raw.(type) {
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case float64:
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			return x, nil
		}
	case float32:
		return float64(x), nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f, nil
		}
	}
	return 0, fmt.Errorf("must be a number, got %s", Describe(raw))
}

// toDuration accepts Go durations ("90s", "1m30s"); a bare number is refused because its unit would be a guess.
func toDuration(raw any) (time.Duration, error) {
	switch x := raw.(type) {
	case time.Duration:
		return x, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(x))
		if err == nil {
			return d, nil
		}
	case int:
		if x == 0 {
			return 0, nil
		}
	}
	return 0, fmt.Errorf("must be a duration such as \"30s\" or \"5m\", got %s", Describe(raw))
}

func toStrings(raw any) ([]string, error) {
	switch x := raw.(type) {
	case []string:
		return x, nil
	case []any:
		out := make([]string, 0, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("item %d must be a string, got %s", i, Describe(e))
			}
			out = append(out, s)
		}
		return out, nil
	case string:
		// Environment form: comma-separated.
		var out []string
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("must be a list of strings, got %s", Describe(raw))
}

// toStringMap reads a mapping of names to strings: a YAML mapping, or the environment form "name=value,..." (the
// form of OTEL_EXPORTER_OTLP_HEADERS).
func toStringMap(raw any) (map[string]string, error) {
	switch x := raw.(type) {
	case map[string]string:
		return x, nil
	case map[string]any:
		out := make(map[string]string, len(x))
		for k, e := range x {
			switch e := e.(type) {
			case string:
				out[k] = e
			case int, int64, float64, bool:
				out[k] = fmt.Sprint(e)
			default:
				return nil, fmt.Errorf("value of %q must be a string", k)
			}
		}
		return out, nil
	case string:
		out := map[string]string{}
		for i, part := range strings.Split(x, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			k, val, ok := strings.Cut(part, "=")
			if !ok {
				// Never echo the part: it may be an API key.
				return nil, fmt.Errorf("item %d must be name=value", i)
			}
			out[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		return out, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("must be a mapping of names to strings, got %s", describeShape(raw))
}

// describeShape names a value's kind without its content, for keys whose values may be secrets.
func describeShape(x any) string {
	switch x.(type) {
	case []any:
		return "a list"
	case bool:
		return "a boolean"
	case int, int64, float64:
		return "a number"
	default:
		return fmt.Sprintf("%T", x)
	}
}

// ByteSize is a size in bytes; config values take an integer or a number with a unit (KB, MB, GB, TB powers of
// 1000; KiB, MiB, GiB, TiB powers of 1024; B).
type ByteSize int64

// ParseByteSize reads "64MiB", "1.5 GB", "4096".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	x, err := strconv.ParseFloat(num, 64)
	if num == "" || err != nil || x < 0 {
		return 0, fmt.Errorf("must be a size such as \"512MiB\" or \"20GB\", got %q", s)
	}
	mult := map[string]float64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
		"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}[strings.ToUpper(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("unknown size unit %q in %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", unit, s)
	}
	v := x * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return ByteSize(v), nil
}
