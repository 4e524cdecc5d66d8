// Package conf is the configuration's one table and its machinery. A configuration is a struct of sections, each
// section a struct owned by the package it configures (client.Settings is the verifier section, tracing.Settings
// the tracing section, …). A field's tags are everything known about its key:
//
//	key:"name"            the key within its section (YAML path, environment suffix, error messages)
//	check:">=0"           a range every value must be in: >=0, >=1 or >0 (integers, durations, numbers), 0..1
//	flag:"name[,x][,default]"  also settable as the run command's --name (-x), help text from usage:"..."
//
// Leaves walks the table, CheckRanges applies the check tags, Set decodes a value into a field; each section's own
// Validate adds the checks a range cannot say, and reports them as an *Error naming the key.
package conf

import (
	"fmt"
	"net/url"
	"reflect"
	"time"
)

// Error names the config key at fault and, when the value came from the command line or the environment, what the
// user typed there (Source: "flag --model", "environment variable ATTESTLOAD_SCHEDULER_MODEL").
type Error struct {
	Key    string
	Msg    string
	Source string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("config key %q: %s", e.Key, e.Msg)
	if e.Source != "" {
		s = e.Source + ": " + s
	}
	return s
}

// Errorf is an *Error for key.
func Errorf(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Leaf is one settable config key, the field it fills and the field's tags.
type Leaf struct {
	Key   string
	Field reflect.Value
	Tag   reflect.StructTag
}

// Leaves lists the keys of the struct cfg points to, in field order; a struct-typed field (other than a
// time.Duration) is a section whose keys are prefixed with its own, an embedded struct without a key tag is
// inlined into the section that embeds it.
func Leaves(cfg any) []Leaf {
	var out []Leaf
	leaves("", reflect.ValueOf(cfg).Elem(), &out)
	return out
}

func leaves(prefix string, v reflect.Value, out *[]Leaf) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		k, named := f.Tag.Lookup("key")
		switch {
		case !named && f.Anonymous:
			k = prefix // an embedded struct without a key is inlined into its section
		case prefix != "":
			k = prefix + "." + k
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			leaves(k, fv, out)
			continue
		}
		*out = append(*out, Leaf{Key: k, Field: fv, Tag: f.Tag})
	}
}

// CheckRanges applies the check tags of the struct cfg points to, in the order of its keys.
func CheckRanges(cfg any) error {
	for _, l := range Leaves(cfg) {
		rule, ok := l.Tag.Lookup("check")
		if !ok {
			continue
		}
		if err := CheckRange(l.Key, rule, l.Field.Interface()); err != nil {
			return err
		}
	}
	return nil
}

// CheckRange checks one value against a check tag's rule.
func CheckRange(key, rule string, v any) error {
	var bad bool
	var got string
	switch x := v.(type) {
	case int:
		bad, got = rule == ">=0" && x < 0 || rule == ">=1" && x < 1 || rule == ">0" && x <= 0, fmt.Sprint(x)
	case time.Duration:
		bad, got = rule == ">=0" && x < 0 || rule == ">0" && x <= 0, x.String()
	case float64:
		bad, got = rule == ">=0" && x < 0 || rule == "0..1" && (x < 0 || x > 1), fmt.Sprint(x)
	default:
		return Errorf(key, "internal: no range check for %T", v)
	}
	if !bad {
		return nil
	}
	if rule == "0..1" {
		return Errorf(key, "must be within [0, 1], got %s", got)
	}
	return Errorf(key, "must be %s %s, got %s", rule[:len(rule)-1], rule[len(rule)-1:], got)
}

// HTTPURL reports whether s is an http:// or https:// URL with a host.
func HTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
