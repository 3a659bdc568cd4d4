package api

import (
	"fmt"
	"html/template"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/internal/textfmt"
)

// Charts for the pages, drawn by the server as inline SVG: no script, no request elsewhere
// (the pages' CSP allows neither). Each chart is a <figure> holding an SVG with a <title> and a
// <desc> (role="img", so assistive technology reads it as one image with that name and
// description) and, under it, the same data as a table in a <details> element, for people who
// cannot see the chart or want the exact figures.
//
// Values are decimals: scales, ticks and the figures written are computed in decimal; a value
// becomes a float64 only as a pixel coordinate. Every text is escaped here, so the HTML
// returned is safe to put in a page as it is.

// chartPoint is one value of a chart.
type chartPoint struct {
	Label string          // in full: the table's row header and the point's tooltip ("January 2026")
	Short string          // on the x axis, "\n" for a second line ("Jan\n2026"); default Label
	Value decimal.Decimal //
	Text  string          // the value as written ("1,250.00 USD"); default Value as a number
	// Missing: no value here (a line breaks, a bar is not drawn, the table says "no data").
	Missing bool
}

// chartColumn is an extra column of a chart's data table, one cell per point.
type chartColumn struct {
	Header string
	Cells  []string
}

// chartReference is a horizontal line across a chart at Value, such as 1.0 for "no class
// gap" on economic connectedness.
type chartReference struct {
	Value decimal.Decimal
	Label string
}

// chart is what barChart and lineChart draw.
type chart struct {
	ID     string // unique on the page; letters, digits and dashes (others are dropped)
	Title  string
	Desc   string // what the chart shows; a summary of the data is added to it
	YLabel string // the unit of the values, written above the axis ("USD")
	// ValueHeader and LabelHeader head the data table's columns ("Released", "Month").
	ValueHeader, LabelHeader string
	Points                   []chartPoint
	Extra                    []chartColumn
	Reference                *chartReference
	// Whole: the values are counts, so the axis has whole steps (no 0.5 of a milestone).
	Whole bool
}

// Geometry of every chart, in SVG units. Width is its natural size on a wide screen; on a
// phone it scales down with the page (the layout sets svg{max-width:100%;height:auto}).
const (
	chartW, chartH                   = 480, 260
	chartLeft, chartRight            = 56, 12
	chartTop, chartBottom            = 28, 40
	chartFont                        = 13
	chartPlotW                       = chartW - chartLeft - chartRight
	chartPlotH                       = chartH - chartTop - chartBottom
	chartBarFill, chartLineStroke    = "#0b57b0", "#0b57b0"
	chartGrid, chartAxis, chartMuted = "#dddddd", "#555555", "#555555"
)

var chartIDUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// barChart draws c as vertical bars from zero (negative values go below the zero line).
func barChart(c chart) template.HTML { return drawChart(c, false) }

// lineChart draws c as a line through its points, broken where a point is missing.
func lineChart(c chart) template.HTML { return drawChart(c, true) }

func drawChart(c chart, line bool) template.HTML {
	id := chartIDUnsafe.ReplaceAllString(strings.ToLower(c.ID), "")
	if id == "" {
		id = "chart"
	}
	esc := template.HTMLEscapeString
	var b strings.Builder
	b.WriteString(`<figure class="chart">`)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 %d %d" width="%d" height="%d" aria-labelledby="%s-title %s-desc" font-family="system-ui, sans-serif" font-size="%d">`,
		chartW, chartH, chartW, chartH, id, id, chartFont)
	fmt.Fprintf(&b, `<title id="%s-title">%s</title><desc id="%s-desc">%s</desc>`, id, esc(c.Title), id, esc(chartSummary(c)))
	drawPlot(&b, c, line)
	b.WriteString(`</svg>`)
	fmt.Fprintf(&b, `<figcaption>%s</figcaption>`, esc(c.Title))
	chartTable(&b, c)
	b.WriteString(`</figure>`)
	return template.HTML(b.String()) // every text above went through esc
}

// chartSummary is the chart's description followed by what its data says.
func chartSummary(c chart) string {
	var parts []string
	if c.Desc != "" {
		parts = append(parts, strings.TrimSuffix(c.Desc, ".")+".")
	}
	var shown []chartPoint
	for _, p := range c.Points {
		if !p.Missing {
			shown = append(shown, p)
		}
	}
	switch {
	case len(c.Points) == 0 || len(shown) == 0:
		parts = append(parts, "No data yet.")
	case len(c.Points) == 1:
		parts = append(parts, fmt.Sprintf("One value: %s, %s.", c.Points[0].Label, pointText(shown[0])))
	default:
		hi, lo := shown[0], shown[0]
		for _, p := range shown[1:] {
			if p.Value.GreaterThan(hi.Value) {
				hi = p
			}
			if p.Value.LessThan(lo.Value) {
				lo = p
			}
		}
		first, last := c.Points[0], c.Points[len(c.Points)-1]
		parts = append(parts, fmt.Sprintf("%d values from %s to %s; highest %s (%s), lowest %s (%s).", len(c.Points),
			first.Label, last.Label, pointText(hi), hi.Label, pointText(lo), lo.Label))
		if !last.Missing {
			parts = append(parts, fmt.Sprintf("Latest: %s.", pointText(last)))
		}
	}
	return strings.Join(parts, " ")
}

func pointText(p chartPoint) string {
	if p.Missing {
		return "no data"
	}
	if p.Text != "" {
		return p.Text
	}
	return textfmt.GroupDigits(p.Value.String())
}

// drawPlot writes the axes, gridlines and the data.
func drawPlot(b *strings.Builder, c chart, line bool) {
	esc := template.HTMLEscapeString
	var shown []decimal.Decimal
	for _, p := range c.Points {
		if !p.Missing {
			shown = append(shown, p.Value)
		}
	}
	if c.Reference != nil {
		shown = append(shown, c.Reference.Value)
	}
	ticks := axisTicks(shown, c.Whole)
	lo, hi := ticks[0], ticks[len(ticks)-1]
	span := hi.Sub(lo)
	// y is a value's pixel row: the one place a decimal becomes a float.
	y := func(v decimal.Decimal) float64 {
		return chartTop + hi.Sub(v).Div(span).InexactFloat64()*chartPlotH
	}
	if c.YLabel != "" {
		fmt.Fprintf(b, `<text x="%d" y="%d" fill="%s">%s</text>`, 4, chartFont+2, chartMuted, esc(c.YLabel))
	}
	b.WriteString(`<g aria-hidden="true">`)
	labels := tickTexts(ticks)
	for i, t := range ticks {
		ty := y(t)
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%s" y2="%s" stroke="%s"/>`, chartLeft, chartW-chartRight, px(ty), px(ty), chartGrid)
		fmt.Fprintf(b, `<text x="%d" y="%s" text-anchor="end" fill="%s">%s</text>`, chartLeft-6, px(ty+4), chartMuted, esc(labels[i]))
	}
	zero := y(decimal.Zero)
	fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%s" y2="%s" stroke="%s"/>`, chartLeft, chartW-chartRight, px(zero), px(zero), chartAxis)
	fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s"/>`, chartLeft, chartLeft, chartTop, chartTop+chartPlotH, chartAxis)
	n := len(c.Points)
	if n == 0 || len(shown) == 0 || (c.Reference != nil && len(shown) == 1) {
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" fill="%s">No data yet</text>`, chartLeft+chartPlotW/2, chartTop+chartPlotH/2, chartMuted)
	}
	if n == 0 {
		b.WriteString(`</g>`)
		return
	}
	slot := float64(chartPlotW) / float64(n)
	center := func(i int) float64 { return chartLeft + slot*(float64(i)+0.5) }
	// X labels: as many as fit, evenly spaced, always the last one.
	widest := 1
	for _, p := range c.Points {
		for _, l := range strings.Split(shortOf(p), "\n") {
			widest = max(widest, len([]rune(l)))
		}
	}
	every := max(1, int(math.Ceil(float64(widest*chartFont*6/10+8)/slot)))
	for i, p := range c.Points {
		if (n-1-i)%every != 0 {
			continue
		}
		fmt.Fprintf(b, `<text x="%s" y="%d" text-anchor="middle" fill="%s">`, px(center(i)), chartTop+chartPlotH+chartFont+4, chartMuted)
		for j, l := range strings.Split(shortOf(p), "\n") {
			dy := "0"
			if j > 0 {
				dy = strconv.Itoa(chartFont + 1)
			}
			fmt.Fprintf(b, `<tspan x="%s" dy="%s">%s</tspan>`, px(center(i)), dy, esc(l))
		}
		b.WriteString(`</text>`)
	}
	b.WriteString(`</g>`)
	if c.Reference != nil {
		ry := y(c.Reference.Value)
		fmt.Fprintf(b, `<g><title>%s</title><line x1="%d" x2="%d" y1="%s" y2="%s" stroke="%s" stroke-dasharray="6 4"/>`,
			esc(c.Reference.Label), chartLeft, chartW-chartRight, px(ry), px(ry), chartAxis)
		fmt.Fprintf(b, `<text x="%d" y="%s" text-anchor="end" fill="%s" aria-hidden="true">%s</text></g>`,
			chartW-chartRight-2, px(ry-4), chartMuted, esc(c.Reference.Label))
	}
	if line {
		var path strings.Builder
		pen := false
		for i, p := range c.Points {
			if p.Missing {
				pen = false
				continue
			}
			op := "L"
			if !pen {
				op = "M"
			}
			fmt.Fprintf(&path, "%s%s %s ", op, px(center(i)), px(y(p.Value)))
			pen = true
		}
		if path.Len() > 0 {
			fmt.Fprintf(b, `<path d="%s" fill="none" stroke="%s" stroke-width="2.5" stroke-linejoin="round"/>`,
				strings.TrimSpace(path.String()), chartLineStroke)
		}
		for i, p := range c.Points {
			if p.Missing {
				continue
			}
			fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="4" fill="%s"><title>%s: %s</title></circle>`,
				px(center(i)), px(y(p.Value)), chartLineStroke, esc(p.Label), esc(pointText(p)))
		}
		return
	}
	barW := slot * 0.7
	for i, p := range c.Points {
		if p.Missing {
			continue
		}
		top, bottom := y(decimal.Max(p.Value, decimal.Zero)), y(decimal.Min(p.Value, decimal.Zero))
		fmt.Fprintf(b, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s: %s</title></rect>`,
			px(center(i)-barW/2), px(top), px(barW), px(bottom-top), chartBarFill, esc(p.Label), esc(pointText(p)))
	}
}

func shortOf(p chartPoint) string {
	if p.Short != "" {
		return p.Short
	}
	return p.Label
}

// chartTable writes the chart's data as a table, folded under the chart.
func chartTable(b *strings.Builder, c chart) {
	esc := template.HTMLEscapeString
	label, value := c.LabelHeader, c.ValueHeader
	if label == "" {
		label = "Label"
	}
	if value == "" {
		value = "Value"
	}
	fmt.Fprintf(b, `<details><summary>Table of the data: %s</summary><div class="table-wrap"><table><caption>%s</caption><thead><tr><th scope="col">%s</th><th scope="col" class="amount">%s</th>`,
		esc(c.Title), esc(c.Title), esc(label), esc(value))
	for _, x := range c.Extra {
		fmt.Fprintf(b, `<th scope="col" class="amount">%s</th>`, esc(x.Header))
	}
	b.WriteString(`</tr></thead><tbody>`)
	if len(c.Points) == 0 {
		fmt.Fprintf(b, `<tr><td colspan="%d">No data yet.</td></tr>`, 2+len(c.Extra))
	}
	for i, p := range c.Points {
		fmt.Fprintf(b, `<tr><th scope="row">%s</th><td class="amount">%s</td>`, esc(p.Label), esc(pointText(p)))
		for _, x := range c.Extra {
			cell := ""
			if i < len(x.Cells) {
				cell = x.Cells[i]
			}
			fmt.Fprintf(b, `<td class="amount">%s</td>`, esc(cell))
		}
		b.WriteString(`</tr>`)
	}
	b.WriteString(`</tbody></table></div></details>`)
}

// axisTicks are round values from at most zero to at least zero, covering vs, about five
// steps apart: 0, 250, 500, 750, 1000.
func axisTicks(vs []decimal.Decimal, whole bool) []decimal.Decimal {
	lo, hi := decimal.Zero, decimal.Zero
	for _, v := range vs {
		lo, hi = decimal.Min(lo, v), decimal.Max(hi, v)
	}
	if lo.Equal(hi) {
		hi = decimal.NewFromInt(1)
	}
	step := niceStep(hi.Sub(lo).Div(decimal.NewFromInt(5)))
	if whole && step.LessThan(decimal.NewFromInt(1)) {
		step = decimal.NewFromInt(1)
	}
	start := lo.Div(step).Floor().Mul(step)
	end := hi.Div(step).Ceil().Mul(step)
	var ticks []decimal.Decimal
	for t := start; t.LessThanOrEqual(end); t = t.Add(step) {
		ticks = append(ticks, t)
	}
	return ticks
}

// niceStep is the smallest of 1, 2, 5 times a power of ten that is at least rough.
func niceStep(rough decimal.Decimal) decimal.Decimal {
	if !rough.IsPositive() {
		return decimal.NewFromInt(1)
	}
	p := decimal.NewFromInt(1)
	for p.GreaterThan(rough) {
		p = p.Shift(-1)
	}
	for p.Shift(1).LessThanOrEqual(rough) {
		p = p.Shift(1)
	}
	for _, m := range []int64{1, 2, 5, 10} {
		if s := p.Mul(decimal.NewFromInt(m)); s.GreaterThanOrEqual(rough) {
			return s
		}
	}
	return p.Shift(1)
}

// tickTexts write an axis's values short enough for the margin, all in the same unit:
// 0, 500, 1,000 or 0, 0.5M, 1M.
func tickTexts(ticks []decimal.Decimal) []string {
	most := decimal.Zero
	for _, t := range ticks {
		most = decimal.Max(most, t.Abs())
	}
	var exp int32
	suffix := ""
	for _, u := range []struct {
		exp    int32
		suffix string
	}{{12, "T"}, {9, "B"}, {6, "M"}} {
		if most.GreaterThanOrEqual(decimal.New(1, u.exp)) {
			exp, suffix = u.exp, u.suffix
			break
		}
	}
	out := make([]string, len(ticks))
	for i, t := range ticks {
		out[i] = textfmt.GroupDigits(t.Shift(-exp).String())
		if !t.IsZero() {
			out[i] += suffix
		}
	}
	return out
}

// px writes a coordinate to a tenth of a unit.
func px(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }
