package textfmt

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGroupDigits(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"0": "0", "999": "999", "1000": "1,000", "1234567.891": "1,234,567.891",
		"-1234.50": "-1,234.50", "100000": "100,000", "-100": "-100", "-1000000": "-1,000,000", "20000.00": "20,000.00"} {
		assert.Equal(t, want, GroupDigits(in), in)
	}
}

func TestDays(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{0: "0 days", 1: "1 day", 2: "2 days", 60: "60 days", -1: "-1 day"} {
		assert.Equal(t, want, Days(n))
	}
}
