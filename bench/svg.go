package bench

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"text/template"
	"time"
)

// The picture: achieved rate (top) and p99 latency (bottom, log scale) per
// second of each target's run, one colour per target, overlaid on the
// same time axis (each target's own run starts at 0).
const (
	svgWidth  = 1000
	svgLeft   = 80  // room for the y labels
	svgRight  = 240 // room for the legend
	svgTop    = 70  // room for the title
	svgPanelH = 200
	svgGap    = 70
	// svgLegendStep is the height of one target's legend: four lines.
	svgLegendStep = 90
	// svgMinBucket drops a last, partial second shorter than this: its
	// rate would rest on too few answers to mean anything.
	svgMinBucket = 500 * time.Millisecond
)

// Each target has a colour and a dash, so lines that overlap stay
// visible; seckill is drawn last, on top.
var (
	svgColors = map[string]string{TargetSeckill: "#d62728", TargetSeeds: "#2ca02c", TargetRedis: "#1f77b4", TargetBare: "#7f7f7f"}
	svgDashes = map[string]string{TargetSeeds: "6,2,2,2", TargetRedis: "9,4", TargetBare: "3,3"}
)

type svgTick struct {
	Pos   float64
	Label string
}

type svgSeries struct {
	Name, Color, Dash        string
	Legend, Legend2, Legend3 string
	Legend4                  string
	Rate, P99                string // polyline points
	Dots                     []svgDot
	SellOut                  float64 // x of the dashed sell-out line, 0 for none
	LegendY                  float64
}

type svgDot struct{ X, Y float64 }

type svgDoc struct {
	Width, Height                  int
	Left, Right, PlotW, PanelH     float64
	Title, Subtitle                string
	RateTop, RateBottom            float64
	P99Top, P99Bottom              float64
	XTicks, RateTicks, P99Ticks    []svgTick
	Series                         []svgSeries
	RateLabelY, P99LabelY, XLabelY float64
	LegendX                        float64
}

var svgTemplate = template.Must(template.New("svg").Funcs(template.FuncMap{"x": xmlText}).Parse(
	`<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{{.Left}}" y="28" font-size="18" font-weight="bold">{{x .Title}}</text>
<text x="{{.Left}}" y="50" fill="#444">{{x .Subtitle}}</text>
<text x="{{.Left}}" y="{{.RateLabelY}}" font-weight="bold">achieved answers per second</text>
<text x="{{.Left}}" y="{{.P99LabelY}}" font-weight="bold">p99 latency (log scale, from the time each request was due)</text>
{{range .RateTicks}}<line x1="{{$.Left}}" x2="{{$.Right}}" y1="{{.Pos}}" y2="{{.Pos}}" stroke="#e4e4e4"/>
<text x="{{$.Left}}" dx="-6" y="{{.Pos}}" dy="4" text-anchor="end">{{x .Label}}</text>
{{end}}{{range .P99Ticks}}<line x1="{{$.Left}}" x2="{{$.Right}}" y1="{{.Pos}}" y2="{{.Pos}}" stroke="#e4e4e4"/>
<text x="{{$.Left}}" dx="-6" y="{{.Pos}}" dy="4" text-anchor="end">{{x .Label}}</text>
{{end}}{{range .XTicks}}<line x1="{{.Pos}}" x2="{{.Pos}}" y1="{{$.RateTop}}" y2="{{$.RateBottom}}" stroke="#f0f0f0"/>
<line x1="{{.Pos}}" x2="{{.Pos}}" y1="{{$.P99Top}}" y2="{{$.P99Bottom}}" stroke="#f0f0f0"/>
<text x="{{.Pos}}" y="{{$.RateBottom}}" dy="16" text-anchor="middle">{{x .Label}}</text>
<text x="{{.Pos}}" y="{{$.P99Bottom}}" dy="16" text-anchor="middle">{{x .Label}}</text>
{{end}}<text x="{{.Right}}" y="{{.XLabelY}}" text-anchor="end" fill="#444">seconds since the target's first request</text>
<rect x="{{.Left}}" y="{{.RateTop}}" width="{{.PlotW}}" height="{{.PanelH}}" fill="none" stroke="#999"/>
<rect x="{{.Left}}" y="{{.P99Top}}" width="{{.PlotW}}" height="{{.PanelH}}" fill="none" stroke="#999"/>
{{range .Series}}{{if .SellOut}}<line x1="{{.SellOut}}" x2="{{.SellOut}}" y1="{{$.RateTop}}" y2="{{$.P99Bottom}}" stroke="{{.Color}}" stroke-dasharray="3,3"/>
{{end}}<polyline points="{{.Rate}}" fill="none" stroke="{{.Color}}" stroke-width="2.5" stroke-dasharray="{{.Dash}}"/>
<polyline points="{{.P99}}" fill="none" stroke="{{.Color}}" stroke-width="2.5" stroke-dasharray="{{.Dash}}"/>
{{$c := .Color}}{{range .Dots}}<circle cx="{{.X}}" cy="{{.Y}}" r="3" fill="{{$c}}"/>
{{end}}{{end}}{{range .Series}}<rect x="{{$.LegendX}}" y="{{.LegendY}}" width="14" height="14" fill="{{.Color}}"/>
<text x="{{$.LegendX}}" dx="20" y="{{.LegendY}}" dy="12" font-weight="bold">{{x .Name}}</text>
<text x="{{$.LegendX}}" dx="20" y="{{.LegendY}}" dy="28" fill="#444">{{x .Legend}}</text>
<text x="{{$.LegendX}}" dx="20" y="{{.LegendY}}" dy="44" fill="#444">{{x .Legend2}}</text>
{{if .Legend3}}<text x="{{$.LegendX}}" dx="20" y="{{.LegendY}}" dy="60" fill="#444">{{x .Legend3}}</text>{{end}}
{{if .Legend4}}<text x="{{$.LegendX}}" dx="20" y="{{.LegendY}}" dy="76" fill="#444">{{x .Legend4}}</text>
{{end}}{{end}}</svg>
`))

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// bucketRates is answers per second for each second of r, the last,
// partial second divided by its length (and dropped when too short).
func bucketRates(r Result) (rates []float64, p99 []time.Duration, mids []float64) {
	for i, s := range r.Timeline {
		width := min(r.Elapsed-time.Duration(i)*time.Second, time.Second)
		if width < svgMinBucket {
			break
		}
		rates = append(rates, float64(s.Answers)/width.Seconds())
		p99 = append(p99, s.P99)
		mids = append(mids, float64(i)+width.Seconds()/2)
	}
	return rates, p99, mids
}

func writeSVG(w io.Writer, plan *Plan, rs []Result) error {
	d := svgDoc{Width: svgWidth, Left: svgLeft, Right: svgWidth - svgRight, LegendX: svgWidth - svgRight + 20}
	d.PlotW, d.PanelH = d.Right-d.Left, svgPanelH
	d.RateLabelY, d.RateTop = svgTop+22, svgTop+30
	d.RateBottom = d.RateTop + svgPanelH
	d.P99LabelY, d.P99Top = d.RateBottom+svgGap-8, d.RateBottom+svgGap
	d.P99Bottom = d.P99Top + svgPanelH
	d.XLabelY = d.P99Bottom + 36
	d.Height = int(d.XLabelY) + 16
	d.Title = fmt.Sprintf("seckill bench: %s", plan.Workload)
	d.Subtitle = subtitle(plan, rs)

	var tMax, rMax float64
	lo, hi := math.Inf(1), math.Inf(-1) // log10 of p99 in µs
	for _, r := range rs {
		rates, p99, _ := bucketRates(r)
		tMax = max(tMax, r.Elapsed.Seconds())
		for i := range rates {
			rMax = max(rMax, rates[i])
			if p99[i] > 0 {
				v := math.Log10(float64(p99[i].Microseconds()))
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if tMax == 0 || rMax == 0 || math.IsInf(lo, 0) {
		tMax, rMax, lo, hi = 1, 1, 2, 3
	}
	lo, hi = math.Floor(lo), math.Ceil(hi)
	if hi <= lo {
		hi = lo + 1
	}
	rTop := niceCeil(rMax)
	x := func(t float64) float64 { return d.Left + t/tMax*d.PlotW }
	yRate := func(v float64) float64 { return d.RateBottom - v/rTop*svgPanelH }
	yP99 := func(us float64) float64 {
		return d.P99Bottom - (math.Log10(max(us, 1))-lo)/(hi-lo)*svgPanelH
	}
	step := max(niceCeil(tMax/10), 1)
	for t := 0.0; t <= tMax+1e-9; t += step {
		d.XTicks = append(d.XTicks, svgTick{x(t), fmt.Sprintf("%g", t)})
	}
	for i := 0; i <= 4; i++ {
		v := rTop * float64(i) / 4
		d.RateTicks = append(d.RateTicks, svgTick{yRate(v), siCount(v)})
	}
	for e := lo; e <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			// 2 and 5 only where there is room for them.
			if us := m * math.Pow(10, e); m == 1 || e < hi && hi-lo <= 2 {
				d.P99Ticks = append(d.P99Ticks, svgTick{yP99(us), tickDur(us)})
			}
		}
	}
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		rates, p99, mids := bucketRates(r)
		sr := svgSeries{Name: r.Target, Color: svgColors[r.Target], Dash: svgDashes[r.Target],
			Legend:  fmt.Sprintf("%s/s achieved", siCount(r.Rate())),
			Legend2: fmt.Sprintf("p99 %s · max %s", dur(r.Quantile(99)), dur(r.Max())),
			LegendY: d.RateTop + float64(i)*svgLegendStep}
		if sr.Color == "" {
			sr.Color = "#2ca02c"
		}
		if sr.Dash == "" {
			sr.Dash = "none"
		}
		var rp, lp strings.Builder
		for j := range rates {
			px, py := x(mids[j]), yRate(rates[j])
			fmt.Fprintf(&rp, "%.1f,%.1f ", px, py)
			sr.Dots = append(sr.Dots, svgDot{px, py})
			if p99[j] > 0 {
				py = yP99(float64(p99[j].Microseconds()))
				fmt.Fprintf(&lp, "%.1f,%.1f ", px, py)
				sr.Dots = append(sr.Dots, svgDot{px, py})
			}
		}
		sr.Rate, sr.P99 = rp.String(), lp.String()
		var more []string
		if r.CPUPerAnswer() >= 0 {
			more = append(more, "cpu "+cpuDur(r.CPUPerAnswer())+" per answer")
		}
		if r.SellOut >= 0 {
			sr.SellOut = x(r.SellOut.Seconds())
			more = append(more, "sold out at "+dur(r.SellOut)+" (┆)")
		}
		more = append(more, "", "")
		sr.Legend3, sr.Legend4 = more[0], more[1]
		d.Series = append(d.Series, sr)
	}
	return svgTemplate.Execute(w, d)
}

func subtitle(plan *Plan, rs []Result) string {
	if len(rs) == 0 {
		return ""
	}
	r := rs[0]
	parts := []string{fmt.Sprintf("%d units", plan.Stock)}
	if len(plan.Items) > 1 {
		parts[0] = fmt.Sprintf("%d items of %d units", len(plan.Items), plan.Stock)
	}
	switch {
	case r.Mode == "closed":
		parts = append(parts, fmt.Sprintf("closed loop, %d connections", r.Conns))
	case plan.Retry:
		parts = append(parts, fmt.Sprintf("%s buyers arriving, retrying with backoff; %d connections", siCount(float64(plan.Users)), r.Conns))
	default:
		parts = append(parts, fmt.Sprintf("open loop at %s/s, %d connections", siCount(r.Offered), r.Conns))
	}
	parts = append(parts, "one point per second")
	return strings.Join(parts, " · ")
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// siCount prints 12345 as 12.3k.
func siCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}

// tickDur prints a round latency in µs as 500µs, 2ms or 1s.
func tickDur(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%gs", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%gms", us/1e3)
	}
	return fmt.Sprintf("%gµs", us)
}
