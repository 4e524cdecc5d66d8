// Package pyfmt prints numbers, durations and padded text exactly as the old Python tool (keylime-perf-tests)
// did, so that the report's legacy tables and the daemon's -v request lines match it byte for byte. Each function
// names the Python expression it mirrors. It knows nothing of records or reports.
package pyfmt

import (
	"math"
	"strconv"
	"strings"
)

// Micro is the microsecond unit the old tool wrote: U+03BC, Greek small mu (not U+00B5, the micro sign).
const Micro = "μs"

// Repr mirrors Python's repr(float): the shortest digits that round-trip, in fixed notation for exponents in
// [-4, 16) with at least one decimal, otherwise in scientific notation with a signed, two-digit-minimum exponent.
func Repr(x float64) string {
	switch {
	case math.IsNaN(x):
		return "nan"
	case math.IsInf(x, 1):
		return "inf"
	case math.IsInf(x, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(x, 'e', -1, 64) // d.ddde±XX
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	digits := strings.Replace(mant, ".", "", 1)
	sign := ""
	if neg {
		sign = "-"
	}
	if exp < -4 || exp >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es = "-"
			exp = -exp
		}
		return sign + m + "e" + es + pad2(exp)
	}
	if exp < 0 {
		return sign + "0." + strings.Repeat("0", -exp-1) + digits
	}
	if len(digits) <= exp+1 {
		return sign + digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
	}
	return sign + digits[:exp+1] + "." + digits[exp+1:]
}

func pad2(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// Round1 mirrors repr(round(x, 1)): x rounded half-to-even on its exact binary value to one decimal.
func Round1(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return Repr(x)
	}
	// FormatFloat rounds the exact binary value correctly; parsing it back gives the float Python's round returns.
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 1, 64), 64)
	return Repr(r)
}

// RoundInt mirrors str(round(x)): half-to-even to an integer, printed without a decimal point.
func RoundInt(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return Repr(x)
	}
	return strconv.FormatFloat(math.RoundToEven(x), 'f', 0, 64)
}

// Duration mirrors the old tool's duration helper: the unit is chosen by magnitude, sub-second units are
// whole numbers, the others carry one decimal.
func Duration(sec float64) string {
	switch {
	case sec < 1e-6:
		return RoundInt(sec*1e9) + "ns"
	case sec < 1e-3:
		return RoundInt(sec*1e6) + Micro
	case sec < 1:
		return RoundInt(sec*1e3) + "ms"
	case sec < 60:
		return Round1(sec) + "s"
	case sec < 3600:
		return Round1(sec/60) + "m"
	default:
		return Round1(sec/3600) + "h"
	}
}

// Timedelta mirrors str(timedelta(seconds=round(sec))): H:MM:SS, with "N day(s), " in front past a day.
func Timedelta(sec float64) string {
	if math.IsNaN(sec) || math.IsInf(sec, 0) {
		return "0:00:00"
	}
	total := int64(math.RoundToEven(sec))
	prefix := ""
	days := total / 86400
	rem := total % 86400
	if rem < 0 { // timedelta normalises negative values to negative days and a positive remainder
		rem += 86400
		days--
	}
	if days != 0 {
		unit := " days, "
		if days == 1 || days == -1 {
			unit = " day, "
		}
		prefix = strconv.FormatInt(days, 10) + unit
	}
	h, m, s := rem/3600, rem%3600/60, rem%60
	return prefix + strconv.FormatInt(h, 10) + ":" + pad2(int(m)) + ":" + pad2(int(s))
}

// Center mirrors Python's str.center, including where the odd padding space goes: on the left when both the
// padding and the width are odd, otherwise on the right.
func Center(s string, width int) string {
	n := runeLen(s)
	marg := width - n
	if marg <= 0 {
		return s
	}
	left := marg/2 + (marg & width & 1)
	return strings.Repeat(" ", left) + s + strings.Repeat(" ", marg-left)
}

func runeLen(s string) int {
	n := 0
	for range s {
		n++
	}
	return n
}

// PadLeft mirrors str.rjust: s right-aligned in width runes.
func PadLeft(s string, width int) string {
	if n := runeLen(s); n < width {
		return strings.Repeat(" ", width-n) + s
	}
	return s
}

// PadRight mirrors str.ljust: s left-aligned in width runes.
func PadRight(s string, width int) string {
	if n := runeLen(s); n < width {
		return s + strings.Repeat(" ", width-n)
	}
	return s
}
