//! The HTML report's charts. plotters' SVG backend lays out each chart (nice tick steps, gridlines,
//! axis descriptions, a second value axis, log scales); this module adds what a static SVG lacks:
//! a legend beside the plot (HTML, so it never covers a line) and the data for the page's hover
//! script: every point's pixel position with its value, as plotters placed it, so the script needs
//! no coordinate maths of its own.
//!
//! A chart has one or two panels on one time axis (the headline: load and replicas above, CPU
//! against its target below), or is a percentile spectrum on a log "1 in N" axis.

use std::fmt::Write as _;

use plotters::chart::{DualCoordChartContext, MeshStyle};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

const W: u32 = 1100;
const PANEL_H: u32 = 330;
const LOWER_H: u32 = 190;
const FONT: &str = "sans-serif";

/// Which value axis a series is read against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// One line: a name for the legend and tooltip, a colour, dashed or not, its points.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub unit: &'static str,
    pub colour: (u8, u8, u8),
    pub side: Side,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, unit: &'static str, colour: (u8, u8, u8)) -> Series {
        Series {
            name: name.into(),
            unit,
            colour,
            side: Side::Left,
            dashed: false,
            points: Vec::new(),
        }
    }

    pub fn points(mut self, points: Vec<(f64, f64)>) -> Series {
        self.points = points;
        self
    }

    pub fn right(mut self) -> Series {
        self.side = Side::Right;
        self
    }

    pub fn dashed(mut self) -> Series {
        self.dashed = true;
        self
    }
}

/// One plot area: its value axes and lines.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    pub y_desc: String,
    /// The right axis's description; `None`: one value axis.
    pub y2_desc: Option<String>,
    pub series: Vec<Series>,
}

/// A chart of one or two panels over the run's time, with vertical marks (scaling events).
#[derive(Clone, Debug)]
pub struct TimeChart {
    pub id: &'static str,
    pub title: String,
    pub t_end: f64,
    pub upper: Panel,
    pub lower: Option<Panel>,
    pub marks: Vec<(f64, String)>,
}

/// Where plotters put one series' points: (pixel x, pixel y, x value, y value).
type Placed = Vec<(i32, i32, f64, f64)>;

/// Text for HTML (the page's and the charts' titles and names).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn colour(c: (u8, u8, u8)) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

fn hex(c: (u8, u8, u8)) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing a chart: {e:?}")
}

/// The axis's top: the largest value with 10 % headroom (1 when nothing is above 0).
fn top(series: &[Series], side: Side) -> f64 {
    let max = series
        .iter()
        .filter(|s| s.side == side)
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    nice_top(max)
}

/// Value labels on an axis: what `look` asks plotters for.
const Y_LABELS: usize = 7;

/// The top of a value axis: 10% above the highest point, rounded up to a multiple of the
/// 1-2-5 step plotters will pick for [`Y_LABELS`] labels. Without the rounding, plotters' step
/// ladder leaves some tops with three labels (0, 5, 10 for a top of 14), too few to read a value
/// off; rounded, an axis carries four to seven and ends on a labelled line.
fn nice_top(max: f64) -> f64 {
    if !(max > 0.0 && max.is_finite()) {
        return 1.0;
    }
    let want = max * 1.1;
    let intervals = (Y_LABELS - 1) as f64;
    let mut step = 10f64.powf((want / intervals).log10().floor());
    for factor in [1.0, 2.0, 5.0, 10.0] {
        if (want / (step * factor)).ceil() <= intervals {
            step *= factor;
            break;
        }
    }
    (want / step).ceil() * step
}

/// A tick label without needless decimals: 0, 2.5, 1200, 0.05.
fn tick(v: f64) -> String {
    let s = if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn style(s: &Series) -> ShapeStyle {
    ShapeStyle {
        color: colour(s.colour).to_rgba(),
        filled: false,
        stroke_width: 2,
    }
}

/// A time panel's chart: seconds across, a left and a right value axis.
type Dual<'a, 'b> = DualCoordChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<RangedCoordf64, RangedCoordf64>,
    Cartesian2d<RangedCoordf64, RangedCoordf64>,
>;

/// Draws one time panel on `area`; returns where its points landed.
fn draw_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    p: &Panel,
    t_end: f64,
    marks: &[(f64, String)],
    x_desc: Option<&str>,
) -> Result<Vec<Placed>, String> {
    let (y_top, y2_top) = (top(&p.series, Side::Left), top(&p.series, Side::Right));
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .margin_right(if p.y2_desc.is_some() { 8 } else { 72 })
        .x_label_area_size(if x_desc.is_some() { 44 } else { 24 })
        .y_label_area_size(72)
        .right_y_label_area_size(if p.y2_desc.is_some() { 64 } else { 0 })
        .build_cartesian_2d(0f64..t_end, 0f64..y_top)
        .map_err(err)?
        .set_secondary_coord(0f64..t_end, 0f64..y2_top);
    axes(&mut chart, p, x_desc)?;
    let grey = ShapeStyle {
        color: RGBColor(120, 120, 120).to_rgba(),
        filled: false,
        stroke_width: 1,
    };
    for (t, label) in marks {
        chart
            .draw_series(DashedLineSeries::new([(*t, 0.0), (*t, y_top)], 4, 4, grey))
            .map_err(err)?;
        // Labelled once, in the panel with the replicas.
        if x_desc.is_none() || p.y2_desc.is_some() {
            let text = Text::new(label.clone(), (*t, y_top), (FONT, 12).into_font());
            chart.draw_series(std::iter::once(text)).map_err(err)?;
        }
    }
    p.series.iter().map(|s| line(&mut chart, s)).collect()
}

/// Every chart's axes look alike: label sizes, value ticks, gridline greys.
fn look<X, Y, XT, YT>(mesh: &mut MeshStyle<'_, '_, X, Y, SVGBackend<'_>>)
where
    X: Ranged<ValueType = XT> + ValueFormatter<XT>,
    Y: Ranged<ValueType = YT> + ValueFormatter<YT>,
{
    mesh.y_labels(Y_LABELS)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .bold_line_style(RGBColor(222, 222, 222))
        .light_line_style(RGBColor(244, 244, 244));
}

/// Ticks, gridlines and axis descriptions of a time panel.
fn axes(chart: &mut Dual, p: &Panel, x_desc: Option<&str>) -> Result<(), String> {
    let fmt = |v: &f64| tick(*v);
    let mut mesh = chart.configure_mesh();
    look(&mut mesh);
    mesh.y_desc(p.y_desc.as_str())
        .x_labels(14)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt);
    if let Some(d) = x_desc {
        mesh.x_desc(d);
    }
    mesh.draw().map_err(err)?;
    if let Some(d) = &p.y2_desc {
        chart
            .configure_secondary_axes()
            .y_desc(d.as_str())
            .y_labels(Y_LABELS)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .y_label_formatter(&fmt)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// One series against its axis; returns where its points landed.
fn line(chart: &mut Dual, s: &Series) -> Result<Placed, String> {
    let pts = s.points.iter().copied();
    match (s.side, s.dashed) {
        (Side::Left, false) => chart.draw_series(LineSeries::new(pts, style(s))).map(drop),
        (Side::Left, true) => chart
            .draw_series(DashedLineSeries::new(pts, 7, 4, style(s)))
            .map(drop),
        (Side::Right, false) => chart
            .draw_secondary_series(LineSeries::new(pts, style(s)))
            .map(drop),
        (Side::Right, true) => chart
            .draw_secondary_series(DashedLineSeries::new(pts, 7, 4, style(s)))
            .map(drop),
    }
    .map_err(err)?;
    // A line needs two points; a lone reading (one scrape in a short run) is a dot.
    if let [only] = s.points[..] {
        let dot = Circle::new(only, 4, style(s));
        match s.side {
            Side::Left => chart.draw_series(std::iter::once(dot)).map(drop),
            Side::Right => chart.draw_secondary_series(std::iter::once(dot)).map(drop),
        }
        .map_err(err)?;
    }
    let at = |&(x, y): &(f64, f64)| match s.side {
        Side::Left => chart.backend_coord(&(x, y)),
        Side::Right => chart.borrow_secondary().backend_coord(&(x, y)),
    };
    let points = s.points.iter().map(|p| (at(p).0, at(p).1, p.0, p.1));
    Ok(points.collect())
}

impl TimeChart {
    /// A chart of one panel without marks.
    pub fn single(id: &'static str, title: &str, t_end: f64, upper: Panel) -> TimeChart {
        TimeChart {
            id,
            title: title.into(),
            t_end,
            upper,
            lower: None,
            marks: Vec::new(),
        }
    }

    /// The chart as an HTML figure: the SVG, its legend and its hover data.
    pub fn html(&self) -> Result<String, String> {
        let t_end = self.t_end.max(1.0);
        let h = PANEL_H + self.lower.as_ref().map_or(0, |_| LOWER_H);
        let mut svg = String::new();
        let mut placed = Vec::new();
        {
            let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let x_desc = "seconds since the load started";
            match &self.lower {
                None => placed.extend(draw_panel(
                    &root,
                    &self.upper,
                    t_end,
                    &self.marks,
                    Some(x_desc),
                )?),
                Some(lower) => {
                    let (a, b) = root.split_vertically(PANEL_H);
                    placed.extend(draw_panel(&a, &self.upper, t_end, &self.marks, None)?);
                    placed.extend(draw_panel(&b, lower, t_end, &self.marks, Some(x_desc))?);
                }
            }
            root.present().map_err(err)?;
        }
        let series: Vec<&Series> = self
            .upper
            .series
            .iter()
            .chain(self.lower.iter().flat_map(|l| l.series.iter()))
            .collect();
        Ok(figure(self.id, &self.title, &svg, &series, &placed, "s"))
    }
}

/// A percentile spectrum: latency against percentile on a log "1 in N" axis, as HdrHistogram's
/// plotter and wrk2 draw it. Series points are (percentile, ms).
pub fn spectrum(id: &'static str, title: &str, series: &[Series]) -> Result<String, String> {
    let one_in = |pct: f64| 1.0 / (1.0 - (pct / 100.0).min(0.999_999_9));
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| one_in(p.0)))
        .fold(100.0f64, f64::max);
    let x_max = 10f64.powf(x_max.log10().ceil());
    let y_top = top(series, Side::Left);
    let mut svg = String::new();
    let mut placed = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, PANEL_H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .margin_right(72)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d((1f64..x_max).log_scale(), 0f64..y_top)
            .map_err(err)?;
        let x_fmt = |x: &f64| percent_label(*x);
        let y_fmt = |v: &f64| tick(*v);
        let mut mesh = chart.configure_mesh();
        look(&mut mesh);
        mesh.x_desc("percentile (log scale: 1 in N requests is slower)")
            .y_desc("latency (ms)")
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(err)?;
        for s in series {
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (one_in(p.0), p.1)).collect();
            match s.dashed {
                false => chart
                    .draw_series(LineSeries::new(pts.clone(), style(s)))
                    .map(drop),
                true => chart
                    .draw_series(DashedLineSeries::new(pts.clone(), 7, 4, style(s)))
                    .map(drop),
            }
            .map_err(err)?;
            let at = pts.iter().zip(&s.points).map(|(x, p)| {
                let c = chart.backend_coord(x);
                (c.0, c.1, p.0, p.1)
            });
            placed.push(at.collect());
        }
        root.present().map_err(err)?;
    }
    let series: Vec<&Series> = series.iter().collect();
    Ok(figure(id, title, &svg, &series, &placed, "%"))
}

/// "1 in N" as a percentile label: 1 -> 0%, 10 -> 90%, 1000 -> 99.9%.
fn percent_label(one_in: f64) -> String {
    let pct = 100.0 * (1.0 - 1.0 / one_in);
    let decimals = (one_in.log10().round() as i32 - 2).max(0) as usize;
    format!("{pct:.decimals$}%")
}

/// The figure: title, plot with tooltip box, legend, and the hover data as JSON.
fn figure(
    id: &str,
    title: &str,
    svg: &str,
    series: &[&Series],
    placed: &[Placed],
    x_unit: &str,
) -> String {
    let mut legend = String::new();
    for s in series {
        let dash = if s.dashed { " dashed" } else { "" };
        let _ = write!(
            legend,
            r#"<li><span class="swatch{dash}" style="border-color:{}"></span>{}</li>"#,
            hex(s.colour),
            escape(&s.name)
        );
    }
    let data = serde_json::json!({
        "x_unit": x_unit,
        "series": series.iter().zip(placed).map(|(s, pts)| serde_json::json!({
            "name": s.name, "unit": s.unit, "colour": hex(s.colour), "points": pts,
        })).collect::<Vec<_>>(),
    });
    // `</` cannot end the script element early: JSON allows "<\/".
    let data = data.to_string().replace("</", "<\\/");
    format!(
        r#"<figure class="chart" id="{id}"><figcaption>{}</figcaption><div class="body"><div class="plot">{svg}<div class="tip" hidden></div></div><ul class="legend">{legend}</ul></div><script type="application/json" class="chart-data">{data}</script></figure>"#,
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_percentiles_read_as_people_write_them() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(1200.0), "1200");
        assert_eq!(tick(0.05), "0.05");
        assert_eq!(percent_label(1.0), "0%");
        assert_eq!(percent_label(10.0), "90%");
        assert_eq!(percent_label(100.0), "99%");
        assert_eq!(percent_label(1000.0), "99.9%");
        assert_eq!(percent_label(100_000.0), "99.999%");
    }

    #[test]
    fn value_axes_end_on_a_label_and_carry_four_to_seven() {
        let mut max = 0.001;
        while max < 1e7 {
            let top = nice_top(max);
            let keys = RangedCoordf64::from(0f64..top).key_points(Y_LABELS);
            assert!(top >= max * 1.1, "{max}: top {top}");
            assert!(
                (4..=Y_LABELS).contains(&keys.len()),
                "{max}: top {top}: {keys:?}"
            );
            let last = *keys.last().unwrap();
            assert!(
                (last - top).abs() <= top * 1e-9,
                "{max}: top {top}: {keys:?}"
            );
            max *= 1.013;
        }
        assert_eq!(nice_top(12.7), 15.0);
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(f64::NAN), 1.0);
    }

    #[test]
    fn every_series_is_drawn_in_its_colour_and_placed_for_hover() {
        let chart = TimeChart {
            id: "t",
            title: "load <&>".into(),
            t_end: 10.0,
            upper: Panel {
                y_desc: "requests per second".into(),
                y2_desc: Some("replicas".into()),
                series: vec![
                    Series::new("offered", "req/s", (31, 119, 180))
                        .points(vec![(0.0, 0.0), (10.0, 50.0)]),
                    Series::new("replicas", "pods", (255, 127, 14))
                        .right()
                        .dashed()
                        .points(vec![(0.0, 3.0), (5.0, 3.0), (5.0, 7.0), (10.0, 7.0)]),
                ],
            },
            lower: Some(Panel {
                y_desc: "CPU (%)".into(),
                y2_desc: None,
                series: vec![Series::new("cpu", "%", (214, 39, 40)).points(vec![(0.0, 150.0)])],
            }),
            marks: vec![(5.0, "3 → 7".into())],
        };
        let html = chart.html().unwrap();
        assert!(html.contains("load &lt;&amp;&gt;"), "{html}");
        for colour in ["#1F77B4", "#FF7F0E", "#D62728"] {
            assert!(html.contains(&format!("stroke=\"{colour}\"")), "{colour}");
        }
        let json = html.split("class=\"chart-data\">").nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(json.split("</script>").next().unwrap()).unwrap();
        let replicas = json["series"][1]["points"].as_array().unwrap();
        // Later in time is further right; more replicas is higher up (smaller pixel y).
        assert!(replicas[3][0].as_i64() > replicas[0][0].as_i64());
        assert!(replicas[3][1].as_i64() < replicas[0][1].as_i64());
        assert!(html.contains("seconds since the load started") && html.contains("3 → 7"));
    }
}
