package api

import (
	"encoding/xml"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func points(values ...string) []chartPoint {
	var out []chartPoint
	for i, v := range values {
		p := chartPoint{Label: "M" + strconv.Itoa(i+1)}
		if v == "" {
			p.Missing = true
		} else {
			p.Value = decimal.RequireFromString(v)
		}
		out = append(out, p)
	}
	return out
}

var (
	rectAttrs   = regexp.MustCompile(`<rect x="([-0-9.]+)" y="([-0-9.]+)" width="([-0-9.]+)" height="([-0-9.]+)"`)
	circleAttrs = regexp.MustCompile(`<circle cx="([-0-9.]+)" cy="([-0-9.]+)"`)
	tickLabel   = regexp.MustCompile(`<text x="50" y="[-0-9.]+" text-anchor="end" fill="#555555">([^<]*)</text>`)
)

// svgOf is the <svg> element of a chart's figure.
func svgOf(t *testing.T, html string) string {
	t.Helper()
	start, end := strings.Index(html, "<svg"), strings.Index(html, "</svg>")
	require.True(t, start >= 0 && end > start, html)
	return html[start : end+len("</svg>")]
}

// wellFormed parses s as XML: the SVG must be, and so must the whole figure (the pages are
// HTML, but every element here is closed).
func wellFormed(t *testing.T, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		require.NoError(t, err, s)
	}
}

func floats(t *testing.T, ms [][]string, i int) []float64 {
	t.Helper()
	var out []float64
	for _, m := range ms {
		f, err := strconv.ParseFloat(m[i], 64)
		require.NoError(t, err)
		out = append(out, f)
	}
	return out
}

func TestCharts(t *testing.T) {
	t.Parallel()
	plotTop, plotBottom := float64(chartTop), float64(chartTop+chartPlotH)
	for _, tc := range []struct {
		name   string
		line   bool
		c      chart
		bars   int      // rects drawn (bar charts)
		dots   int      // circles drawn (line charts)
		ticks  []string // the y axis's labels, top to bottom
		has    []string // in the figure
		hasNot []string
		check  func(t *testing.T, svg string)
	}{
		{name: "empty bars", c: chart{ID: "e", Title: "Nothing"}, ticks: []string{"1", "0.8", "0.6", "0.4", "0.2", "0"},
			has: []string{"No data yet", "<td colspan=\"2\">No data yet.</td>", `<desc id="e-desc">No data yet.</desc>`}},
		{name: "empty line", line: true, c: chart{ID: "e", Title: "Nothing", Reference: &chartReference{Value: decimal.NewFromInt(1), Label: "one"}},
			has: []string{"No data yet"}, hasNot: []string{"<path"}},
		{name: "all missing", line: true, c: chart{ID: "m", Title: "Gaps", Points: points("", "")},
			has: []string{"No data yet", "<td class=\"amount\">no data</td>"}, hasNot: []string{"<path", "<circle"}},
		{name: "one point", c: chart{ID: "one", Title: "One", Points: points("250")}, bars: 1, ticks: []string{"250", "200", "150", "100", "50", "0"},
			has: []string{"One value: M1, 250.", "<title>M1: 250</title>"},
			check: func(t *testing.T, svg string) {
				r := rectAttrs.FindStringSubmatch(svg)
				y, _ := strconv.ParseFloat(r[2], 64)
				h, _ := strconv.ParseFloat(r[4], 64)
				assert.InDelta(t, plotBottom, y+h, 0.11, "the bar stands on zero")
				assert.InDelta(t, plotTop, y, 0.11, "the highest value is the top of the axis")
			}},
		{name: "one point line", line: true, c: chart{ID: "l", Title: "One", Points: points("0.5")}, dots: 1,
			has: []string{"M", "<circle"}},
		{name: "zeros", c: chart{ID: "z", Title: "Zeros", Points: points("0", "0", "0"), Whole: true}, bars: 3, ticks: []string{"1", "0"},
			check: func(t *testing.T, svg string) {
				for _, h := range floats(t, rectAttrs.FindAllStringSubmatch(svg, -1), 4) {
					assert.Zero(t, h, "a zero is no bar")
				}
			}},
		{name: "negative and positive", c: chart{ID: "n", Title: "Net", Points: points("-50", "100", "0")}, bars: 3,
			ticks: []string{"100", "50", "0", "-50"},
			check: func(t *testing.T, svg string) {
				ms := rectAttrs.FindAllStringSubmatch(svg, -1)
				ys, hs := floats(t, ms, 2), floats(t, ms, 4)
				zero := plotTop + float64(chartPlotH)*100/150
				assert.InDelta(t, zero, ys[0], 0.11, "a negative bar hangs from zero")
				assert.InDelta(t, float64(chartPlotH)*50/150, hs[0], 0.11)
				assert.InDelta(t, plotTop, ys[1], 0.11)
				assert.InDelta(t, zero, ys[1]+hs[1], 0.11)
			}},
		{name: "all negative", c: chart{ID: "neg", Title: "Down", Points: points("-3", "-1")}, bars: 2, ticks: []string{"0", "-1", "-2", "-3"}},
		{name: "large values", c: chart{ID: "big", Title: "Big", Points: points("999999999999999.99", "1")}, bars: 2,
			ticks: []string{"1,000T", "800T", "600T", "400T", "200T", "0"},
			has:   []string{"highest 999,999,999,999,999.99 (M1)"}},
		{name: "millions", c: chart{ID: "mil", Title: "Funds", Points: points("2500000", "1250000.50")}, bars: 2,
			ticks: []string{"2.5M", "2M", "1.5M", "1M", "0.5M", "0"}},
		{name: "small fractions", line: true, c: chart{ID: "ec", Title: "EC", Points: points("0.12", "0.3"),
			Reference: &chartReference{Value: decimal.NewFromInt(1), Label: "1.0 = no class gap"}}, dots: 2,
			ticks: []string{"1", "0.8", "0.6", "0.4", "0.2", "0"}, has: []string{`stroke-dasharray="6 4"`, "1.0 = no class gap"}},
		{name: "gap in a line", line: true, c: chart{ID: "g", Title: "EC", Points: points("1", "", "2", "1.5")}, dots: 3,
			check: func(t *testing.T, svg string) {
				d := regexp.MustCompile(`<path d="([^"]+)"`).FindStringSubmatch(svg)[1]
				assert.Equal(t, 2, strings.Count(d, "M"), "the line breaks where a point is missing: %s", d)
				assert.Equal(t, 1, strings.Count(d, "L"), d)
			}},
		{name: "escaping", c: chart{ID: `x"><script>`, Title: `<b>Funds</b> & "co"`, Desc: `</desc><script>alert(1)</script>`,
			YLabel: `<i>USD</i>`, LabelHeader: `<th>`, ValueHeader: `"v"`,
			Points: []chartPoint{{Label: `<img src=x onerror=alert(1)>`, Short: "a&b\n<c>", Value: decimal.NewFromInt(5), Text: `5 <USD>`}},
			Extra:  []chartColumn{{Header: "<x>", Cells: []string{`<y>`}}}},
			bars: 1,
			has: []string{`id="xscript-title"`, "&lt;b&gt;Funds&lt;/b&gt; &amp; &#34;co&#34;", "&lt;/desc&gt;&lt;script&gt;",
				"&lt;img src=x onerror=alert(1)&gt;", "a&amp;b", "&lt;c&gt;", "5 &lt;USD&gt;", "&lt;i&gt;USD&lt;/i&gt;", "&lt;x&gt;", "&lt;y&gt;"},
			hasNot: []string{"<script", "<img", "<b>", "<i>", "<x>", "<y>", "<c>"}},
		{name: "many months", c: chart{ID: "many", Title: "Two years", Points: points(strings.Split(strings.Repeat("1,", 23)+"1", ",")...)},
			bars: 24, check: func(t *testing.T, svg string) {
				labels := strings.Count(svg, "<tspan")
				assert.Less(t, labels, 24, "labels are thinned out to fit")
				assert.Greater(t, labels, 3)
				assert.Contains(t, svg, ">M24</tspan>", "the last label is always shown")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			draw := barChart
			if tc.line {
				draw = lineChart
			}
			html := string(draw(tc.c))
			wellFormed(t, html)
			svg := svgOf(t, html)
			id := chartIDUnsafe.ReplaceAllString(strings.ToLower(tc.c.ID), "")
			assert.Contains(t, svg, `role="img"`)
			assert.Contains(t, svg, `aria-labelledby="`+id+`-title `+id+`-desc"`)
			assert.Contains(t, svg, `<title id="`+id+`-title">`)
			assert.Contains(t, svg, `<desc id="`+id+`-desc">`)
			assert.Contains(t, html, `<figcaption>`)
			assert.Contains(t, html, `<details><summary>Table of the data:`)
			assert.Contains(t, html, `<th scope="col"`)
			assert.NotContains(t, html, "NaN")
			assert.NotContains(t, html, "Inf")
			assert.Equal(t, tc.bars, len(rectAttrs.FindAllString(svg, -1)), "bars")
			assert.Equal(t, tc.dots, len(circleAttrs.FindAllString(svg, -1)), "dots")
			for _, m := range rectAttrs.FindAllStringSubmatch(svg, -1) {
				for _, v := range m[1:] {
					f, _ := strconv.ParseFloat(v, 64)
					assert.True(t, f >= 0 && f <= chartW, "coordinate %s inside the chart", v)
				}
				h, _ := strconv.ParseFloat(m[4], 64)
				assert.GreaterOrEqual(t, h, 0.0)
			}
			for _, m := range circleAttrs.FindAllStringSubmatch(svg, -1) {
				cy, _ := strconv.ParseFloat(m[2], 64)
				assert.True(t, cy >= plotTop-0.01 && cy <= plotBottom+0.01, "point %s inside the plot", m[2])
			}
			if tc.ticks != nil {
				var got []string
				for _, m := range tickLabel.FindAllStringSubmatch(svg, -1) {
					got = append([]string{m[1]}, got...) // drawn bottom up
				}
				assert.Equal(t, tc.ticks, got)
			}
			for _, h := range tc.has {
				assert.Contains(t, html, h)
			}
			for _, h := range tc.hasNot {
				assert.NotContains(t, html, h)
			}
			if tc.check != nil {
				tc.check(t, svg)
			}
			// Every point is in the table, in order.
			rows := strings.Count(html, `<th scope="row">`)
			assert.Equal(t, len(tc.c.Points), rows)
		})
	}
}

func TestAxisTicks(t *testing.T) {
	t.Parallel()
	d := decimal.RequireFromString
	for _, tc := range []struct {
		values []string
		whole  bool
		want   string
	}{
		{nil, false, "0 0.2 0.4 0.6 0.8 1"},
		{[]string{"0"}, true, "0 1"},
		{[]string{"7"}, true, "0 2 4 6 8"},
		{[]string{"3"}, true, "0 1 2 3"},
		{[]string{"1000"}, false, "0 200 400 600 800 1000"},
		{[]string{"1001"}, false, "0 500 1000 1500"},
		{[]string{"0.013"}, false, "0 0.005 0.01 0.015"},
		{[]string{"-10", "10"}, false, "-10 -5 0 5 10"},
		{[]string{"-0.5"}, false, "-0.5 -0.4 -0.3 -0.2 -0.1 0"},
	} {
		var vs []decimal.Decimal
		for _, v := range tc.values {
			vs = append(vs, d(v))
		}
		var got []string
		for _, tk := range axisTicks(vs, tc.whole) {
			got = append(got, tk.String())
		}
		assert.Equal(t, tc.want, strings.Join(got, " "), "%v", tc.values)
	}
}
