//! Charts drawn on the server as inline SVG: time series with a goal band and event markers,
//! empirical distribution functions of two samples, and series over looks. Colours come from
//! the stylesheet (classes), so the markup carries no inline style.

use maud::{Markup, PreEscaped, html};
use std::fmt::Write;

/// How the x axis is labelled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XAxis {
    /// Milliseconds since the Unix epoch, labelled as UTC dates and times.
    Time,
    /// Plain numbers, with a unit after them.
    Number(&'static str),
}

/// A marker shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// A triangle at the top: something was decided.
    Triangle,
    /// A circle at the top: a verdict.
    Circle,
    /// A diamond at the top: a rollback.
    Diamond,
    /// A bar at the bottom: an alert.
    Bar,
}

/// An event drawn as a vertical line with a symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub shape: Shape,
    /// CSS class (colour).
    pub class: &'static str,
    /// Tooltip.
    pub title: String,
    /// Where a click goes.
    pub href: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Layer {
    /// A filled band between `lo` and `hi` along x.
    Band {
        points: Vec<(f64, f64, f64)>,
        class: &'static str,
    },
    /// A polyline; `step` draws it as a staircase (an ECDF).
    Line {
        points: Vec<(f64, f64)>,
        class: &'static str,
        step: bool,
        label: String,
    },
    /// A horizontal region over the whole width (a goal band).
    Region {
        y0: f64,
        y1: f64,
        class: &'static str,
    },
    /// A horizontal line with a label.
    HLine {
        y: f64,
        class: &'static str,
        label: String,
    },
    /// A vertical line with a label.
    VLine {
        x: f64,
        class: &'static str,
        label: String,
    },
}

/// A chart being assembled.
#[derive(Debug, Clone)]
pub struct Chart {
    width: f64,
    height: f64,
    x: (f64, f64),
    y: Option<(f64, f64)>,
    x_axis: XAxis,
    y_log: bool,
    y_format: fn(f64) -> String,
    layers: Vec<Layer>,
    markers: Vec<Marker>,
    title: String,
}

const LEFT: f64 = 56.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 24.0;

impl Chart {
    /// A chart of `width` × `height` pixels over `x`, titled for screen readers.
    pub fn new(title: impl Into<String>, width: u32, height: u32, x: (f64, f64)) -> Chart {
        Chart {
            width: width as f64,
            height: height as f64,
            x: if x.1 > x.0 { x } else { (x.0, x.0 + 1.0) },
            y: None,
            x_axis: XAxis::Time,
            y_log: false,
            y_format: plain,
            layers: Vec::new(),
            markers: Vec::new(),
            title: title.into(),
        }
    }

    /// The x axis's labelling.
    pub fn x_axis(mut self, axis: XAxis) -> Chart {
        self.x_axis = axis;
        self
    }

    /// A fixed y range (otherwise fitted to what is drawn).
    pub fn y_range(mut self, lo: f64, hi: f64) -> Chart {
        if lo.is_finite() && hi.is_finite() && hi > lo {
            self.y = Some((lo, hi));
        }
        self
    }

    /// A logarithmic y axis (values must be positive).
    pub fn y_log(mut self) -> Chart {
        self.y_log = true;
        self
    }

    /// How y tick labels are written.
    pub fn y_format(mut self, f: fn(f64) -> String) -> Chart {
        self.y_format = f;
        self
    }

    /// A band between `lo` and `hi`.
    pub fn band(mut self, points: Vec<(f64, f64, f64)>, class: &'static str) -> Chart {
        self.layers.push(Layer::Band { points, class });
        self
    }

    /// A line through `points`.
    pub fn line(
        mut self,
        points: Vec<(f64, f64)>,
        class: &'static str,
        label: impl Into<String>,
    ) -> Chart {
        self.layers.push(Layer::Line {
            points,
            class,
            step: false,
            label: label.into(),
        });
        self
    }

    /// A staircase through `points` (each point starts a step).
    pub fn steps(
        mut self,
        points: Vec<(f64, f64)>,
        class: &'static str,
        label: impl Into<String>,
    ) -> Chart {
        self.layers.push(Layer::Line {
            points,
            class,
            step: true,
            label: label.into(),
        });
        self
    }

    /// A horizontal region from `y0` to `y1`, clipped to the plot.
    pub fn region(mut self, y0: f64, y1: f64, class: &'static str) -> Chart {
        self.layers.push(Layer::Region { y0, y1, class });
        self
    }

    /// A horizontal line at `y`.
    pub fn hline(mut self, y: f64, class: &'static str, label: impl Into<String>) -> Chart {
        self.layers.push(Layer::HLine {
            y,
            class,
            label: label.into(),
        });
        self
    }

    /// A vertical line at `x`.
    pub fn vline(mut self, x: f64, class: &'static str, label: impl Into<String>) -> Chart {
        self.layers.push(Layer::VLine {
            x,
            class,
            label: label.into(),
        });
        self
    }

    /// Event markers.
    pub fn markers(mut self, markers: Vec<Marker>) -> Chart {
        self.markers.extend(markers);
        self
    }

    fn fitted_y(&self) -> (f64, f64) {
        if let Some(y) = self.y {
            return y;
        }
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        let mut see = |v: f64| {
            if v.is_finite() && (!self.y_log || v > 0.0) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        };
        for l in &self.layers {
            match l {
                Layer::Band { points, .. } => points.iter().for_each(|p| {
                    see(p.1);
                    see(p.2)
                }),
                Layer::Line { points, .. } => points.iter().for_each(|p| see(p.1)),
                Layer::HLine { y, .. } => see(*y),
                Layer::Region { .. } | Layer::VLine { .. } => {}
            }
        }
        if !lo.is_finite() {
            return if self.y_log { (1e-4, 1.0) } else { (0.0, 1.0) };
        }
        if self.y_log {
            return (lo / 2.0, hi * 2.0);
        }
        if hi - lo < 1e-12 {
            let pad = if lo.abs() > 0.0 { lo.abs() * 0.05 } else { 1.0 };
            return (lo - pad, hi + pad);
        }
        let pad = (hi - lo) * 0.08;
        (lo - pad, hi + pad)
    }

    /// The chart as SVG markup.
    pub fn render(&self) -> Markup {
        let (w, h) = (self.width, self.height);
        let (pw, ph) = (w - LEFT - RIGHT, h - TOP - BOTTOM);
        let (y0, y1) = self.fitted_y();
        let (ly0, ly1) = if self.y_log {
            (y0.max(1e-300).log10(), y1.max(1e-300).log10())
        } else {
            (y0, y1)
        };
        let sx = |x: f64| LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * pw;
        let sy = |y: f64| {
            let v = if self.y_log { y.max(1e-300).log10() } else { y };
            let t = ((v - ly0) / (ly1 - ly0)).clamp(-0.02, 1.02);
            TOP + (1.0 - t) * ph
        };
        let mut body = String::with_capacity(8 * 1024);
        // y grid and labels
        for v in y_ticks(y0, y1, self.y_log) {
            let y = sy(v);
            let _ = write!(
                body,
                r#"<line class="grid" x1="{LEFT:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                w - RIGHT,
                LEFT - 4.0,
                y + 3.5,
                escape(&(self.y_format)(v))
            );
        }
        // x labels
        for v in x_ticks(self.x.0, self.x.1, self.x_axis) {
            let x = sx(v);
            let label = match self.x_axis {
                XAxis::Time => time_label(v as i64, self.x.1 - self.x.0),
                XAxis::Number(unit) => format!("{}{unit}", plain(v)),
            };
            // a label near an edge is anchored at it, so it is not cut off
            let anchor = if x > w - RIGHT - 24.0 {
                "end"
            } else if x < LEFT + 24.0 {
                "start"
            } else {
                "middle"
            };
            let _ = write!(
                body,
                r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{TOP:.1}" y2="{:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
                TOP + ph,
                h - 8.0,
                escape(&label)
            );
        }
        for l in &self.layers {
            match l {
                Layer::Region {
                    y0: a,
                    y1: b,
                    class,
                } => {
                    let (ya, yb) = (sy(a.min(*b)), sy(a.max(*b)));
                    let _ = write!(
                        body,
                        r#"<rect class="{class}" x="{LEFT:.1}" y="{yb:.1}" width="{pw:.1}" height="{:.1}"/>"#,
                        (ya - yb).max(0.0)
                    );
                }
                Layer::Band { points, class } if !points.is_empty() => {
                    let mut d = String::new();
                    for (i, (x, _, hi)) in points.iter().enumerate() {
                        let _ = write!(
                            d,
                            "{}{:.1},{:.1}",
                            if i == 0 { "M" } else { "L" },
                            sx(*x),
                            sy(*hi)
                        );
                    }
                    for (x, lo, _) in points.iter().rev() {
                        let _ = write!(d, "L{:.1},{:.1}", sx(*x), sy(*lo));
                    }
                    let _ = write!(body, r#"<path class="{class}" d="{d}Z"/>"#);
                }
                Layer::Line {
                    points,
                    class,
                    step,
                    label,
                } if !points.is_empty() => {
                    let mut d = String::new();
                    let mut prev: Option<f64> = None;
                    for (i, (x, y)) in points.iter().enumerate() {
                        let (px, py) = (sx(*x), sy(*y));
                        if i == 0 {
                            let _ = write!(d, "M{px:.1},{py:.1}");
                        } else if *step {
                            let _ = write!(d, "H{px:.1}V{py:.1}");
                        } else {
                            let _ = write!(d, "L{px:.1},{py:.1}");
                        }
                        prev = Some(py);
                    }
                    if *step && let Some(py) = prev {
                        let _ = write!(d, "H{:.1}V{py:.1}", w - RIGHT);
                    }
                    let _ = write!(
                        body,
                        r#"<path class="{class}" d="{d}"><title>{}</title></path>"#,
                        escape(label)
                    );
                }
                Layer::HLine { y, class, label } => {
                    let py = sy(*y);
                    let _ = write!(
                        body,
                        r#"<line class="{class}" x1="{LEFT:.1}" x2="{:.1}" y1="{py:.1}" y2="{py:.1}"><title>{}</title></line>"#,
                        w - RIGHT,
                        escape(label)
                    );
                }
                Layer::VLine { x, class, label } => {
                    let px = sx(*x);
                    let _ = write!(
                        body,
                        r#"<line class="{class}" x1="{px:.1}" x2="{px:.1}" y1="{TOP:.1}" y2="{:.1}"><title>{}</title></line>"#,
                        TOP + ph,
                        escape(label)
                    );
                }
                _ => {}
            }
        }
        for m in &self.markers {
            if m.x < self.x.0 || m.x > self.x.1 {
                continue;
            }
            let px = sx(m.x);
            let symbol = match m.shape {
                Shape::Triangle => format!(
                    r#"<path d="M{:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}Z"/>"#,
                    px - 5.0,
                    TOP - 1.0,
                    px + 5.0,
                    TOP - 1.0,
                    px,
                    TOP + 7.0
                ),
                Shape::Circle => format!(r#"<circle cx="{px:.1}" cy="{:.1}" r="4"/>"#, TOP + 3.0),
                Shape::Diamond => format!(
                    r#"<path d="M{px:.1},{:.1}L{:.1},{:.1}L{px:.1},{:.1}L{:.1},{:.1}Z"/>"#,
                    TOP - 2.0,
                    px + 5.0,
                    TOP + 3.0,
                    TOP + 8.0,
                    px - 5.0,
                    TOP + 3.0
                ),
                Shape::Bar => format!(
                    r#"<rect x="{:.1}" y="{:.1}" width="3" height="8"/>"#,
                    px - 1.5,
                    TOP + ph - 8.0
                ),
            };
            let inner = format!(
                r#"<g class="marker {}"><title>{}</title><line x1="{px:.1}" x2="{px:.1}" y1="{TOP:.1}" y2="{:.1}"/>{symbol}</g>"#,
                m.class,
                escape(&m.title),
                TOP + ph
            );
            match &m.href {
                Some(href) => {
                    let _ = write!(body, r#"<a href="{}">{inner}</a>"#, escape(href));
                }
                None => body.push_str(&inner),
            }
        }
        let _ = write!(
            body,
            r#"<rect class="frame" x="{LEFT:.1}" y="{TOP:.1}" width="{pw:.1}" height="{ph:.1}"/>"#
        );
        html! {
            svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img"
                viewBox=(format!("0 0 {w} {h}")) width=(w) height=(h) aria-label=(self.title) {
                title { (self.title) }
                (PreEscaped(body))
            }
        }
    }
}

/// An empirical distribution function of weighted values: `(value, cumulative share)` points,
/// one per distinct value, sorted.
pub fn ecdf(values: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = values
        .iter()
        .copied()
        .filter(|(x, w)| x.is_finite() && *w > 0.0)
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = v.iter().map(|p| p.1).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(v.len());
    let mut acc = 0.0;
    for (x, w) in v {
        acc += w;
        match out.last_mut() {
            Some(last) if last.0 == x => last.1 = acc / total,
            _ => out.push((x, acc / total)),
        }
    }
    out
}

/// The `q` quantile of weighted values (the smallest value whose cumulative share reaches q).
pub fn weighted_quantile(values: &[(f64, f64)], q: f64) -> Option<f64> {
    ecdf(values)
        .into_iter()
        .find(|(_, p)| *p >= q - 1e-12)
        .map(|(x, _)| x)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number in few characters.
pub fn plain(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A share as a percentage.
pub fn percent(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

/// Round tick positions over `[lo, hi]`.
fn y_ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log {
        let (a, b) = (
            lo.max(1e-300).log10().ceil(),
            hi.max(1e-300).log10().floor(),
        );
        let step = ((b - a) / 4.0).ceil().max(1.0);
        let mut out = Vec::new();
        let mut e = a;
        while e <= b + 1e-9 && out.len() < 8 {
            out.push(10f64.powf(e));
            e += step;
        }
        return out;
    }
    nice_ticks(lo, hi, 4)
}

fn nice_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    let span = hi - lo;
    if span <= 0.0 || !span.is_finite() {
        return vec![lo];
    }
    let raw = span / count as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= count as f64 + 0.5)
        .unwrap_or(10.0 * mag);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + step * 1e-9 && out.len() < 12 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

fn x_ticks(lo: f64, hi: f64, axis: XAxis) -> Vec<f64> {
    match axis {
        XAxis::Number(_) => nice_ticks(lo, hi, 5),
        XAxis::Time => {
            const MIN: f64 = 60_000.0;
            const HOUR: f64 = 60.0 * MIN;
            const DAY: f64 = 24.0 * HOUR;
            let span = hi - lo;
            let step = [
                5.0 * MIN,
                15.0 * MIN,
                30.0 * MIN,
                HOUR,
                2.0 * HOUR,
                3.0 * HOUR,
                6.0 * HOUR,
                12.0 * HOUR,
                DAY,
                2.0 * DAY,
                7.0 * DAY,
                14.0 * DAY,
                30.0 * DAY,
            ]
            .into_iter()
            .find(|s| span / s <= 5.0)
            .unwrap_or(90.0 * DAY);
            let mut v = (lo / step).ceil() * step;
            let mut out = Vec::new();
            while v <= hi && out.len() < 8 {
                out.push(v);
                v += step;
            }
            out
        }
    }
}

fn time_label(ms: i64, span: f64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return String::new();
    };
    if span <= 2.0 * 86_400_000.0 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%b %d").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdf_of_weighted_values() {
        let e = ecdf(&[
            (3.0, 1.0),
            (1.0, 2.0),
            (3.0, 1.0),
            (f64::NAN, 5.0),
            (2.0, 0.0),
        ]);
        assert_eq!(e, vec![(1.0, 0.5), (3.0, 1.0)]);
        assert!(ecdf(&[]).is_empty());
        assert_eq!(weighted_quantile(&[(1.0, 1.0), (2.0, 1.0)], 0.5), Some(1.0));
        assert_eq!(
            weighted_quantile(&[(1.0, 1.0), (2.0, 1.0)], 0.51),
            Some(2.0)
        );
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 1.0, 4), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let t = nice_ticks(0.81, 0.97, 4);
        assert!(t.iter().all(|v| (0.81..=0.97).contains(v)), "{t:?}");
        assert!(t.len() >= 3);
        let day = 86_400_000.0;
        let t = x_ticks(0.0, 30.0 * day, XAxis::Time);
        assert!(t.len() >= 2 && t.len() <= 6, "{t:?}");
    }

    #[test]
    fn a_chart_escapes_what_it_is_given_and_places_points_inside_the_plot() {
        let svg = Chart::new("a <b> & c", 300, 100, (0.0, 10.0))
            .x_axis(XAxis::Number(""))
            .y_range(0.0, 1.0)
            .line(vec![(0.0, 0.0), (10.0, 1.0)], "s", "line \"x\"")
            .markers(vec![Marker {
                x: 5.0,
                shape: Shape::Circle,
                class: "ok",
                title: "<script>".into(),
                href: Some("/d?a=1&b=2".into()),
            }])
            .render()
            .into_string();
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("/d?a=1&amp;b=2"));
        assert!(svg.contains("line &quot;x&quot;"));
        // the line starts at the plot's left edge and ends at its right edge
        assert!(svg.contains(&format!("M{LEFT:.1},")), "{svg}");
        assert!(
            svg.contains(&format!("L{:.1},{TOP:.1}", 300.0 - RIGHT)),
            "{svg}"
        );
    }
}
