package web

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// The plot's size in SVG user units; the page scales it to its width.
const (
	plotW, plotH                           = 720.0, 220.0
	plotLeft, plotRight, plotTop, plotBott = 56.0, 12.0, 12.0, 28.0
)

// siteStyles tell the sites' lines apart by colour and by dash pattern
// (not by colour alone).
var siteStyles = []struct{ color, dash string }{
	{"#0969da", ""}, {"#8250df", "6 3"}, {"#1b7c83", "2 3"}, {"#bf3989", "8 3 2 3"},
}

// plotSVG draws ss between from and to as an SVG line chart: one line and
// one point (class "pt") per value and site, a y axis in milliseconds from
// 0 to a round maximum, x ticks every tick labelled with layout (UTC), a
// legend naming each site. label is the chart's accessible name.
func plotSVG(label string, ss []series, from, to time.Time, tick time.Duration, layout string) template.HTML {
	var b strings.Builder
	maxMS, n := 0.0, 0
	for _, s := range ss {
		for _, p := range s.Points {
			maxMS = math.Max(maxMS, p.MS)
			n++
		}
	}
	fmt.Fprintf(&b, `<svg class="plot" viewBox="0 0 %g %g" role="img" aria-label="%s" preserveAspectRatio="xMidYMid meet">`,
		plotW, plotH, template.HTMLEscapeString(label))
	fmt.Fprintf(&b, `<title>%s</title>`, template.HTMLEscapeString(label))
	innerW, innerH := plotW-plotLeft-plotRight, plotH-plotTop-plotBott
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 { return plotLeft + innerW*t.Sub(from).Seconds()/span }
	top := niceCeil(maxMS)
	y := func(ms float64) float64 { return plotTop + innerH*(1-ms/top) }

	// Grid and y labels, at round steps: 1 and 5 × 10^k in 5 steps, 2 × 10^k in 4.
	steps := 5
	if lead := top / math.Pow(10, math.Floor(math.Log10(top))); math.Round(lead) == 2 {
		steps = 4
	}
	for i := 0; i <= steps; i++ {
		v := top * float64(i) / float64(steps)
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/>`, plotLeft, plotW-plotRight, y(v), y(v))
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, plotLeft-6, y(v)+4, axisMS(v, top))
	}
	// X ticks.
	for t := from.UTC().Truncate(tick).Add(tick); t.Before(to); t = t.Add(tick) {
		fmt.Fprintf(&b, `<line class="tick" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/>`, x(t), x(t), plotTop+innerH, plotTop+innerH+4)
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x(t), plotH-8, t.Format(layout))
	}
	if n == 0 {
		fmt.Fprintf(&b, `<text class="empty" x="%.1f" y="%.1f" text-anchor="middle">No times in this period</text>`, plotLeft+innerW/2, plotTop+innerH/2)
	}
	for i, s := range ss {
		st := siteStyles[i%len(siteStyles)]
		if len(s.Points) > 1 {
			fmt.Fprintf(&b, `<polyline class="line" fill="none" stroke="%s" stroke-width="1.5"`, st.color)
			if st.dash != "" {
				fmt.Fprintf(&b, ` stroke-dasharray="%s"`, st.dash)
			}
			b.WriteString(` points="`)
			for _, p := range s.Points {
				fmt.Fprintf(&b, "%.1f,%.1f ", x(p.T), y(p.MS))
			}
			b.WriteString(`"/>`)
		}
		for _, p := range s.Points {
			fmt.Fprintf(&b, `<circle class="pt" cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s %s: %s</title></circle>`,
				x(p.T), y(p.MS), st.color, template.HTMLEscapeString(s.Site), p.T.UTC().Format("2006-01-02 15:04:05 UTC"), fmtMS(p.MS))
		}
	}
	b.WriteString(`</svg>`)
	// The legend, as HTML text under the chart.
	b.WriteString(`<ul class="legend">`)
	for i, s := range ss {
		st := siteStyles[i%len(siteStyles)]
		dash := ""
		if st.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, st.dash)
		}
		fmt.Fprintf(&b, `<li><svg width="28" height="10" aria-hidden="true"><line x1="0" x2="28" y1="5" y2="5" stroke="%s" stroke-width="2"%s/></svg> %s <span class="muted">(%d)</span></li>`,
			st.color, dash, template.HTMLEscapeString(s.Site), len(s.Points))
	}
	b.WriteString(`</ul>`)
	return template.HTML(b.String()) // every value above is a number or escaped
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 10 ms).
func niceCeil(v float64) float64 {
	if v <= 10 {
		return 10
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// axisMS labels a y value: milliseconds below 2 s at the top, seconds above.
func axisMS(v, top float64) string {
	if top >= 2000 {
		return fmt.Sprintf("%g s", math.Round(v/100)/10)
	}
	return fmt.Sprintf("%g ms", math.Round(v))
}

// fmtMS formats milliseconds for people: "850 ms", "12.3 s", "4m05s".
func fmtMS(ms float64) string {
	switch {
	case ms < 1000:
		return fmt.Sprintf("%.0f ms", ms)
	case ms < 60000:
		return fmt.Sprintf("%.1f s", ms/1000)
	}
	d := time.Duration(ms) * time.Millisecond
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}
