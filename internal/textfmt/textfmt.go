// Package textfmt formats numbers for people: the pages, the CLI's progress lines and the
// demo's narration write them the same way.
package textfmt

import (
	"fmt"
	"strings"
)

// GroupDigits writes a decimal number, given as text, with thousands separators in its whole
// part: 1234567.5 → 1,234,567.5, -1234 → -1,234. The fraction is kept as written.
func GroupDigits(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	whole, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, r := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if hasFrac {
		b.WriteString("." + frac)
	}
	return sign + b.String()
}

// Days writes a number of days with the noun agreeing: "1 day", "60 days".
func Days(n int) string {
	if n == 1 || n == -1 {
		return fmt.Sprintf("%d day", n)
	}
	return fmt.Sprintf("%d days", n)
}
