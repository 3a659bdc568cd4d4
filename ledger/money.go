package ledger

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/shopspring/decimal"
)

// Currencies maps the ISO 4217 codes Tandem accepts to their exponent (decimal places of the
// minor unit). The ledger_currencies table holds the same list; a test keeps them equal.
var currencies = map[string]int32{
	"AED": 2, "ARS": 2, "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2,
	"CLF": 4, "CLP": 0, "CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2,
	"EUR": 2, "GBP": 2, "GHS": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2,
	"INR": 2, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0, "KES": 2, "KRW": 0,
	"KWD": 3, "LYD": 3, "MXN": 2, "NGN": 2, "NOK": 2, "NZD": 2, "OMR": 3,
	"PEN": 2, "PHP": 2, "PLN": 2, "RON": 2, "SEK": 2, "SGD": 2, "THB": 2,
	"TND": 3, "TRY": 2, "TWD": 2, "UGX": 0, "USD": 2, "VND": 0, "XAF": 0,
	"XOF": 0, "ZAR": 2,
}

// Exponent returns the number of decimal places of currency's minor unit, and false when the
// currency is not one the ledger accepts.
func Exponent(currency string) (int32, bool) {
	e, ok := currencies[currency]
	return e, ok
}

// Currencies returns the accepted currency codes, sorted.
func Currencies() []string {
	out := make([]string, 0, len(currencies))
	for c := range currencies {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// MaxAmount bounds a single posting: amounts must be below 10^15 in major units. It keeps
// sums far from any overflow in clients that read amounts as int64 minor units.
var MaxAmount = decimal.New(1, 15)

// amountSyntax is the only spelling of an amount Tandem accepts: plain decimal digits with an
// optional fraction. No sign, exponent, spaces, thousands separators, NaN or Infinity.
var amountSyntax = regexp.MustCompile(`^(0|[1-9][0-9]{0,14})(\.[0-9]{1,18})?$`)

// ParseAmount parses a positive amount of currency, written as a plain decimal string such as
// "12.50". It refuses anything else: zero, negatives, exponents, NaN, more places than the
// currency has, and amounts of MaxAmount or more. The error wraps ErrInvalidAmount.
func ParseAmount(s, currency string) (decimal.Decimal, error) {
	exp, ok := Exponent(currency)
	if !ok {
		return decimal.Decimal{}, fmt.Errorf("%w: %q", ErrUnknownCurrency, currency)
	}
	if !amountSyntax.MatchString(s) {
		return decimal.Decimal{}, fmt.Errorf("%w: %q is not a plain decimal amount like 12.50", ErrInvalidAmount, s)
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("%w: %q: %v", ErrInvalidAmount, s, err)
	}
	if err := checkAmount(d, currency, exp); err != nil {
		return decimal.Decimal{}, err
	}
	return d, nil
}

// checkAmount holds the rules shared by parsed and programmatic amounts.
func checkAmount(d decimal.Decimal, currency string, exp int32) error {
	switch {
	case !d.IsPositive():
		return fmt.Errorf("%w: %s must be greater than zero", ErrInvalidAmount, d.String())
	case d.Cmp(MaxAmount) >= 0:
		return fmt.Errorf("%w: %s is not below the maximum %s", ErrInvalidAmount, d.String(), MaxAmount.String())
	case !d.Equal(d.Truncate(exp)):
		return fmt.Errorf("%w: %s has more than %d decimal places for %s", ErrInvalidAmount, d.String(), exp, currency)
	}
	return nil
}

// FormatAmount writes an amount with exactly its currency's number of places ("12.50").
func FormatAmount(d decimal.Decimal, currency string) string {
	exp, ok := Exponent(currency)
	if !ok {
		return d.String()
	}
	return d.StringFixed(exp)
}

// Money is an amount with its currency, printed as "12.50 USD".
type Money struct {
	Amount   decimal.Decimal
	Currency string
}

func (m Money) String() string { return FormatAmount(m.Amount, m.Currency) + " " + m.Currency }
