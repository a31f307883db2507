package main

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

// plotSeries is one line of a plot: values v at times t (seconds), and a
// target drawn dashed.
type plotSeries struct {
	name   string
	t, v   []float64
	target float64
}

var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	{188, 189, 34, 255}, {23, 190, 207, 255},
}

// plotShares draws the series as lines over time, each with its target
// dashed in its colour, with axes, ticks and a legend, as a PNG.
func plotShares(path, title string, series []plotSeries) error {
	const w, h = 1100, 650
	const left, right, top, bottom = 70, 230, 40, 50
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	maxT, maxV := 1.0, 0.05
	for _, s := range series {
		for i := range s.t {
			maxT = max(maxT, s.t[i])
			maxV = max(maxV, s.v[i])
		}
		maxV = max(maxV, s.target)
	}
	maxV = math.Ceil(maxV*1.1*20) / 20
	x := func(t float64) int { return left + int(t/maxT*float64(w-left-right)) }
	y := func(v float64) int { return h - bottom - int(v/maxV*float64(h-top-bottom)) }
	grey := color.RGBA{200, 200, 200, 255}
	black := color.RGBA{0, 0, 0, 255}
	// Grid and ticks.
	for v := 0.0; v <= maxV+1e-9; v += 0.05 {
		line(img, left, y(v), w-right, y(v), grey, 0)
		text(img, 20, y(v)+4, fmt.Sprintf("%3.0f%%", v*100), black)
	}
	step := niceStep(maxT)
	for t := 0.0; t <= maxT+1e-9; t += step {
		line(img, x(t), top, x(t), h-bottom, grey, 0)
		text(img, x(t)-8, h-bottom+18, fmt.Sprintf("%.0fs", t), black)
	}
	line(img, left, h-bottom, w-right, h-bottom, black, 0)
	line(img, left, top, left, h-bottom, black, 0)
	text(img, left, 24, title, black)
	for i, s := range series {
		col := palette[i%len(palette)]
		line(img, x(0), y(s.target), x(maxT), y(s.target), col, 6)
		for j := 1; j < len(s.t); j++ {
			thick(img, x(s.t[j-1]), y(s.v[j-1]), x(s.t[j]), y(s.v[j]), col)
		}
		ly := top + 20 + i*20
		thick(img, w-right+15, ly-4, w-right+40, ly-4, col)
		text(img, w-right+48, ly, fmt.Sprintf("%s (%.0f%%)", s.name, s.target*100), black)
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

func niceStep(span float64) float64 {
	for _, s := range []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600} {
		if span/s <= 12 {
			return s
		}
	}
	return 1200
}

// line draws a line; dash > 0 draws dash pixels on, dash off.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color, dash int) {
	dx, dy := x1-x0, y1-y0
	n := max(abs(dx), abs(dy), 1)
	for i := 0; i <= n; i++ {
		if dash > 0 && (i/dash)%2 == 1 {
			continue
		}
		img.Set(x0+dx*i/n, y0+dy*i/n, c)
	}
}

func thick(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	for o := -1; o <= 1; o++ {
		line(img, x0, y0+o, x1, y1+o, c, 0)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
