package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var palette = []color.RGBA{
	{0x44, 0x44, 0x44, 0xff}, // raw
	{0x1f, 0x77, 0xb4, 0xff},
	{0xd6, 0x27, 0x28, 0xff},
	{0x2c, 0xa0, 0x2c, 0xff},
	{0x94, 0x67, 0xbd, 0xff},
}

// panel is one plot area of the chart.
type panel struct {
	img            *image.RGBA
	x0, y0, w, h   int
	xmax, ymax     float64
	title, xl, ylb string
}

func (p *panel) px(x, y float64) (int, int) {
	return p.x0 + int(x/p.xmax*float64(p.w)), p.y0 + p.h - int(y/p.ymax*float64(p.h))
}

func (p *panel) frame() {
	grey := color.RGBA{0xbb, 0xbb, 0xbb, 0xff}
	for x := p.x0; x <= p.x0+p.w; x++ {
		p.img.Set(x, p.y0+p.h, grey)
		p.img.Set(x, p.y0, grey)
	}
	for y := p.y0; y <= p.y0+p.h; y++ {
		p.img.Set(p.x0, y, grey)
		p.img.Set(p.x0+p.w, y, grey)
	}
	label(p.img, p.x0, p.y0-8, p.title)
	label(p.img, p.x0+p.w-len(p.xl)*7, p.y0+p.h+16, p.xl)
	label(p.img, p.x0-4-len(p.ylb)*7, p.y0+34, p.ylb)
	label(p.img, p.x0-10, p.y0+p.h+4, "0")
	xmax := fmt.Sprintf("%.3g", p.xmax)
	label(p.img, p.x0+p.w-len(xmax)*7/2, p.y0+p.h+30, xmax)
}

func (p *panel) line(pts [][2]float64, c color.Color) {
	for i := 1; i < len(pts); i++ {
		x1, y1 := p.px(pts[i-1][0], pts[i-1][1])
		x2, y2 := p.px(pts[i][0], pts[i][1])
		n := max(abs(x2-x1), abs(y2-y1), 1)
		for k := 0; k <= n; k++ {
			x := x1 + (x2-x1)*k/n
			y := y1 + (y2-y1)*k/n
			p.img.Set(x, y, c)
			p.img.Set(x, y+1, c)
		}
	}
}

func (p *panel) dot(x, y float64, c color.Color) {
	cx, cy := p.px(x, y)
	for dx := -1; dx <= 1; dx++ {
		for dy := -1; dy <= 1; dy++ {
			p.img.Set(cx+dx, cy+dy, c)
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func label(img *image.RGBA, x, y int, s string) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(color.Black), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// rateSeries turns cumulative progress into completions per second, in
// buckets of width seconds.
func rateSeries(pts []point, width float64) [][2]float64 {
	if len(pts) == 0 {
		return nil
	}
	end := pts[len(pts)-1].At.Seconds()
	n := int(math.Ceil(end/width)) + 1
	buckets := make([]float64, n)
	prev := 0
	for _, p := range pts {
		buckets[int(p.At.Seconds()/width)] += float64(p.Done - prev)
		prev = p.Done
	}
	// A step per bucket: its rate from its start to its end.
	out := make([][2]float64, 0, 2*n)
	for i, b := range buckets {
		out = append(out, [2]float64{float64(i) * width, b / width}, [2]float64{float64(i+1) * width, b / width})
	}
	return out
}

// Chart draws throughput over time (completions per second, every
// scenario but the naive loop, whose scale is another) and accept → mined
// latency of each relayq job at the time it was mined.
func (rep *Report) Chart(path string) error {
	const W, H = 1100, 760
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	label(img, 20, 20, fmt.Sprintf("relayq bench %s: %d jobs, anvil --block-time %d", rep.Date.Format("2006-01-02"), rep.Options.Jobs, rep.Options.BlockTime))

	var series []*Result
	if rep.Raw != nil {
		series = append(series, rep.Raw)
	}
	for _, r := range rep.Results {
		if r.Name != "naive loop" && !r.NoRatio {
			series = append(series, r)
		}
	}
	width := math.Max(float64(rep.Options.BlockTime), 0.25)
	top := &panel{img: img, x0: 90, y0: 60, w: 740, h: 280, title: "throughput: mined per second", xl: "seconds since first send/POST", ylb: "tx/s"}
	bottom := &panel{img: img, x0: 90, y0: 420, w: 740, h: 280, title: "latency: accept -> mined, by time mined", xl: "seconds since first POST", ylb: "s"}
	for _, r := range series {
		for _, pt := range rateSeries(r.Progress, width) {
			top.xmax = math.Max(top.xmax, pt[0])
			top.ymax = math.Max(top.ymax, pt[1])
		}
		for i, m := range r.Mined {
			if i < len(r.MinedAt) {
				bottom.ymax = math.Max(bottom.ymax, m.Seconds())
			}
		}
		if len(r.Progress) > 0 {
			bottom.xmax = math.Max(bottom.xmax, r.Progress[len(r.Progress)-1].At.Seconds())
		}
	}
	top.xmax, top.ymax = nonzero(top.xmax*1.05), nonzero(top.ymax*1.1)
	bottom.xmax, bottom.ymax = nonzero(bottom.xmax*1.05), nonzero(bottom.ymax*1.1)
	top.frame()
	bottom.frame()
	label(img, top.x0-50, top.y0+18, fmt.Sprintf("%.0f", top.ymax))
	label(img, bottom.x0-50, bottom.y0+18, fmt.Sprintf("%.1f", bottom.ymax))
	for i, r := range series {
		c := palette[i%len(palette)]
		top.line(rateSeries(r.Progress, width), c)
		if len(r.MinedAt) > 0 {
			start := r.MinedAt[0].Add(-r.Mined[0]) // earliest accept is close to the first POST
			for k := range r.MinedAt {
				if s := r.MinedAt[k].Add(-r.Mined[k]); s.Before(start) {
					start = s
				}
			}
			for k, at := range r.MinedAt {
				bottom.dot(at.Sub(start).Seconds(), r.Mined[k].Seconds(), c)
			}
		}
		ly := 80 + 18*i
		for x := 850; x < 870; x++ {
			img.Set(x, ly-4, c)
			img.Set(x, ly-3, c)
		}
		label(img, 875, ly, fmt.Sprintf("%s %.0f/s", r.Name, r.Rate()))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func nonzero(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	return v
}
