//! The sweep plot: output throughput and latency percentiles against concurrency, drawn once
//! as SVG (for documents) and once as PNG (for viewers). Text uses DejaVu Sans compiled into
//! the binary, so the plot renders the same on a headless machine without system fonts.

use super::result::BenchResult;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SIZE: (u32, u32) = (1500, 500);
const FONT: &str = "sans-serif";

/// One series to draw: a label and a value per sweep point.
struct Series {
    label: &'static str,
    color: RGBColor,
    values: Vec<f64>,
}

/// `prefix` + `suffix`, keeping any dots already in the name (`with_extension` would turn
/// `cpu-0.6b` into `cpu-0.svg`).
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `<prefix>.svg` and `<prefix>.png`; returns their paths.
pub fn write_sweep_plot(prefix: &Path, runs: &[BenchResult]) -> Result<Vec<PathBuf>, String> {
    register_font()?;
    let points: Vec<f64> = runs
        .iter()
        .map(|r| r.config.max_concurrency.unwrap_or(r.config.num_prompts) as f64)
        .collect();
    if points.is_empty() {
        return Err("a sweep plot needs at least one run".into());
    }
    let svg = with_suffix(prefix, ".svg");
    let png = with_suffix(prefix, ".png");
    draw(
        SVGBackend::new(&svg, SIZE).into_drawing_area(),
        &points,
        runs,
    )?;
    draw(
        BitMapBackend::new(&png, SIZE).into_drawing_area(),
        &points,
        runs,
    )?;
    Ok(vec![svg, png])
}

fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err("the embedded plot font could not be loaded".into())
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    points: &[f64],
    runs: &[BenchResult],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("plot: {e}");
    root.fill(&WHITE).map_err(err)?;
    let title = runs.first().map_or_else(String::new, |r| {
        format!(
            "{} — {} in / {} out tokens, {} prompts per point",
            r.config.model, r.config.input_len, r.config.output_len, r.config.num_prompts
        )
    });
    let root = root.titled(&title, (FONT, 22).into_font()).map_err(err)?;
    let panels = root.split_evenly((1, 3));
    let m = |f: fn(&BenchResult) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let p99 = |s: &super::stats::Summary| s.at(99.0).unwrap_or(s.median);

    panel(
        &panels[0],
        "Throughput",
        "tokens/s",
        points,
        &[
            Series {
                label: "output tok/s",
                color: BLUE,
                values: m(|r| r.metrics.output_throughput),
            },
            Series {
                label: "total tok/s",
                color: RGBColor(0, 150, 0),
                values: m(|r| r.metrics.total_token_throughput),
            },
        ],
    )?;
    panel(
        &panels[1],
        "Time to first token",
        "ms",
        points,
        &[
            Series {
                label: "median TTFT",
                color: BLUE,
                values: m(|r| r.metrics.ttft.median),
            },
            Series {
                label: "p99 TTFT",
                color: RED,
                values: runs.iter().map(|r| p99(&r.metrics.ttft)).collect(),
            },
        ],
    )?;
    panel(
        &panels[2],
        "Time per output token / inter-token latency",
        "ms",
        points,
        &[
            Series {
                label: "median TPOT",
                color: BLUE,
                values: m(|r| r.metrics.tpot.median),
            },
            Series {
                label: "p99 TPOT",
                color: RED,
                values: runs.iter().map(|r| p99(&r.metrics.tpot)).collect(),
            },
            Series {
                label: "p99 ITL",
                color: RGBColor(200, 120, 0),
                values: runs.iter().map(|r| p99(&r.metrics.itl)).collect(),
            },
        ],
    )?;
    root.present().map_err(err)
}

/// One chart. Sweep points sit evenly spaced and labelled with their concurrency (sweeps are
/// usually geometric: 1, 4, 16), values start from zero.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    y_label: &str,
    points: &[f64],
    series: &[Series],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("plot: {e}");
    let n = points.len();
    let y_max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };

    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18).into_font())
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0.0..y_max)
        .map_err(err)?;
    let x_label = |x: &SegmentValue<usize>| match x {
        SegmentValue::CenterOf(i) => points.get(*i).map_or_else(String::new, |c| format!("{c}")),
        _ => String::new(),
    };
    let y_fmt = |y: &f64| {
        if y_max >= 20.0 {
            format!("{y:.0}")
        } else {
            format!("{y:.1}")
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(n + 1)
        .x_desc("max concurrency")
        .y_desc(y_label)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_fmt)
        .label_style((FONT, 13).into_font())
        .axis_desc_style((FONT, 14).into_font())
        .draw()
        .map_err(err)?;
    for s in series {
        let data: Vec<(SegmentValue<usize>, f64)> = (0..n)
            .map(SegmentValue::CenterOf)
            .zip(s.values.iter().copied())
            .collect();
        let color = s.color;
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                data.iter()
                    .map(|p| Circle::new(p.clone(), 4, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13).into_font())
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_keeps_dots_in_the_prefix() {
        assert_eq!(
            with_suffix(Path::new("docs/cpu-0.6b-sweep"), ".svg"),
            PathBuf::from("docs/cpu-0.6b-sweep.svg")
        );
    }
}
