package shard

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
	}{
		{"0/1", Shard{0, 1}},
		{"0/2", Shard{0, 2}},
		{"1/2", Shard{1, 2}},
		{" 7/8 ", Shard{7, 8}},
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if again, err := Parse(got.String()); err != nil || again != got {
			t.Errorf("Parse(%q.String()) = %v, %v", tc.in, again, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `invalid shard "": want the form i/n, e.g. 0/2`},
		{"3", `invalid shard "3": want the form i/n, e.g. 0/2`},
		{"a/2", `invalid shard "a/2": index "a" is not an integer`},
		{"1/b", `invalid shard "1/b": count "b" is not an integer`},
		{"2/2", `invalid shard 2/2: index must be in [0, 1]`},
		{"-1/2", `invalid shard -1/2: index must be in [0, 1]`},
		{"0/0", `invalid shard 0/0: count must be at least 1`},
		{"1/2/3", `invalid shard "1/2/3": count "2/3" is not an integer`},
	} {
		_, err := Parse(tc.in)
		if err == nil || err.Error() != tc.want || !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) error = %v; want %q", tc.in, err, tc.want)
		}
	}
}

// Every agent index belongs to exactly one shard, the shards are contiguous and in order, and their sizes differ
// by at most one.
func TestRangePartitions(t *testing.T) {
	for n := 1; n <= 9; n++ {
		for total := 0; total <= 50; total++ {
			next, minC, maxC := 0, total, 0
			for i := range n {
				first, count := Shard{i, n}.Range(total)
				if first != next {
					t.Fatalf("total %d, shard %d/%d starts at %d, want %d", total, i, n, first, next)
				}
				next += count
				minC, maxC = min(minC, count), max(maxC, count)
			}
			if next != total {
				t.Fatalf("total %d, %d shards cover %d agents", total, n, next)
			}
			if maxC-minC > 1 {
				t.Fatalf("total %d, %d shards: sizes from %d to %d", total, n, minC, maxC)
			}
		}
	}
}

func TestRangeExamples(t *testing.T) {
	for _, tc := range []struct {
		s                  Shard
		total, first, want int
	}{
		{Shard{}, 10, 0, 10}, // zero value: not sharded
		{Shard{0, 2}, 10, 0, 5},
		{Shard{1, 2}, 10, 5, 5},
		{Shard{0, 3}, 10, 0, 4},
		{Shard{1, 3}, 10, 4, 3},
		{Shard{2, 3}, 10, 7, 3},
		{Shard{2, 3}, 1, 1, 0},
		{Shard{0, 2}, -5, 0, 0},
		{Shard{5, 2}, 10, 0, 0}, // invalid: gets nothing rather than someone else's agents
		{Shard{3, 4}, 1 << 62, 3 << 60, 1 << 60},
	} {
		first, count := tc.s.Range(tc.total)
		if first != tc.first || count != tc.want {
			t.Errorf("%+v.Range(%d) = %d, %d; want %d, %d", tc.s, tc.total, first, count, tc.first, tc.want)
		}
	}
}

func TestFromOrdinal(t *testing.T) {
	for _, tc := range []struct {
		host string
		n    int
		want Shard
	}{
		{"attestload-0", 2, Shard{0, 2}},
		{"attestload-3", 4, Shard{3, 4}},
		{"my-load-gen-12", 13, Shard{12, 13}},
		{"attestload-1.attestload.load.svc.cluster.local", 2, Shard{1, 2}},
	} {
		got, err := FromOrdinal(tc.host, tc.n)
		if err != nil || got != tc.want {
			t.Errorf("FromOrdinal(%q, %d) = %v, %v; want %v", tc.host, tc.n, got, err, tc.want)
		}
	}
}

func TestFromOrdinalErrors(t *testing.T) {
	for _, tc := range []struct {
		host string
		n    int
		want string
	}{
		{"attestload", 2, `does not end in -<ordinal>`},
		{"attestload-", 2, `does not end in -<ordinal>`},
		{"attestload-x1", 2, `does not end in -<ordinal>`},
		{"attestload-+1", 2, `does not end in -<ordinal>`},
		{"attestload-2", 2, `ordinal 2 of hostname "attestload-2" is not below the shard count 2`},
		{"attestload-0", 0, `count must be at least 1`},
		{"attestload-99999999999999999999", 2, `ordinal "99999999999999999999"`},
	} {
		_, err := FromOrdinal(tc.host, tc.n)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("FromOrdinal(%q, %d) error = %v; want it to contain %q", tc.host, tc.n, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0/1", "1/2", "9/3", "-1/-1", "/", "x"} {
		f.Add(s, 100)
	}
	f.Fuzz(func(t *testing.T, s string, total int) {
		sh, err := Parse(s)
		if err != nil {
			return
		}
		first, count := sh.Range(total)
		if first < 0 || count < 0 || (total > 0 && first+count > total) {
			t.Fatalf("%v.Range(%d) = %d, %d", sh, total, first, count)
		}
	})
}
