package conf

import (
	"fmt"
	"math"
	"reflect"
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

// Set decodes raw (as the file, the environment or a flag gave it) into the field of key.
func Set(key string, f reflect.Value, raw any) error {
	switch f.Interface().(type) {
	case string:
		s, ok := raw.(string)
		if !ok {
			if _, isMap := raw.(map[string]any); isMap || raw == nil {
				return Errorf(key, "must be a string, got %s", Describe(raw))
			}
			if _, isList := raw.([]any); isList {
				return Errorf(key, "must be a string, got a list")
			}
			s = fmt.Sprint(raw)
		}
		f.SetString(s)
	case bool:
		b, err := toBool(raw)
		if err != nil {
			return Errorf(key, "%v", err)
		}
		f.SetBool(b)
	case int:
		n, err := toInt(raw)
		if err != nil {
			return Errorf(key, "%v", err)
		}
		f.SetInt(int64(n))
	case float64:
		x, err := toFloat(raw)
		if err != nil {
			return Errorf(key, "%v", err)
		}
		f.SetFloat(x)
	case time.Duration:
		d, err := toDuration(raw)
		if err != nil {
			return Errorf(key, "%v", err)
		}
		f.SetInt(int64(d))
	case []string:
		ss, err := toStrings(raw)
		if err != nil {
			return Errorf(key, "%v", err)
		}
		if len(ss) == 0 {
			ss = nil // "[]" in a file means the same as the default
		}
		f.Set(reflect.ValueOf(ss))
	case map[string]string:
		m, err := toStringMap(raw)
		if err != nil {
			return Errorf(key, "%v", err)
		}
		if len(m) == 0 {
			m = nil // "{}" in a file means the same as the default
		}
		f.Set(reflect.ValueOf(m))
	case ByteSize:
		b, err := toByteSize(raw)
		if err != nil {
			return Errorf(key, "%v", err)
		}
		f.SetInt(int64(b))
	default:
		return Errorf(key, "internal: unsupported field type %s", f.Type())
	}
	return nil
}

// toByteSize reads a size: a non-negative integer of bytes or a number with a unit (ParseByteSize).
func toByteSize(raw any) (ByteSize, error) {
	switch x := raw.(type) {
	case int:
		if x < 0 {
			return 0, fmt.Errorf("must not be negative, got %d", x)
		}
		return ByteSize(x), nil
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
