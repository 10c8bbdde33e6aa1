//! The benchmark's SVG charts. [`render`]: one row per scenario, one panel
//! per question (how fast, how slow, oversold?, unsold?, persisted?, how
//! much CPU?), one bar group per system. [`render_sweep`]: the open-loop
//! sweep's p50 and p99 against the offered rate, one colour per system,
//! with the p99 limit.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::cost::CostReport;
use crate::scenario::ScenarioResult;
use crate::sweep::SystemSweep;

const PANEL_WIDTH: u32 = 480;
const PANEL_HEIGHT: u32 = 380;
/// Panels per scenario row: what [`panels`] returns.
const PANELS: usize = 6;
const PALETTE: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// One bar series of a panel.
struct Series {
    /// Legend text.
    label: &'static str,
    /// One value per system.
    values: Vec<f64>,
}

/// One panel: a title and grouped bars.
struct Panel {
    /// Title shown above the panel.
    title: String,
    /// Y axis description.
    y_desc: &'static str,
    /// Plot log10 of the values (latencies span orders of magnitude).
    log: bool,
    /// Bar series, drawn side by side per system.
    series: Vec<Series>,
}

/// Renders `results` (several scenarios x systems) to an SVG file.
pub fn render(results: &[ScenarioResult], path: &Path) -> anyhow::Result<()> {
    let mut scenarios: Vec<&str> = Vec::new();
    for r in results {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let rows = scenarios.len().max(1);
    let size = (PANEL_WIDTH * PANELS as u32, PANEL_HEIGHT * rows as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let grid = root.split_evenly((rows, PANELS));
    for (row, scenario) in scenarios.iter().enumerate() {
        let of_scenario: Vec<&ScenarioResult> =
            results.iter().filter(|r| r.scenario == *scenario).collect();
        let systems: Vec<String> = of_scenario.iter().map(|r| r.system.clone()).collect();
        for (col, panel) in panels(scenario, &of_scenario).into_iter().enumerate() {
            draw_panel(&grid[row * PANELS + col], &systems, &panel)?;
        }
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

/// A series; a one-word constructor keeps the panel list below readable as
/// a table.
fn s(label: &'static str, values: Vec<f64>) -> Series {
    Series { label, values }
}

/// The [`PANELS`] questions the chart answers for one scenario. A system
/// whose cost was not measured shows 0 CPU.
fn panels(scenario: &str, rs: &[&ScenarioResult]) -> [Panel; PANELS] {
    let col = |f: fn(&ScenarioResult) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<f64>>();
    let cpu = |f: fn(&CostReport) -> f64| {
        rs.iter()
            .map(|r| r.cost.as_ref().map_or(0.0, f))
            .collect::<Vec<f64>>()
    };
    [
        Panel {
            title: format!("{scenario}: throughput"),
            y_desc: "requests/s",
            log: false,
            series: vec![s("answered/s", col(|r| r.report.throughput_rps))],
        },
        Panel {
            title: format!("{scenario}: latency"),
            y_desc: "ms (log scale)",
            log: true,
            series: vec![
                s("p50", col(|r| r.report.latency_ms.p50)),
                s("p99", col(|r| r.report.latency_ms.p99)),
                s("p99.9", col(|r| r.report.latency_ms.p99_9)),
            ],
        },
        Panel {
            title: format!("{scenario}: oversold units"),
            y_desc: "units",
            log: false,
            series: vec![
                s("by answers", col(|r| r.oversold_units_by_answers as f64)),
                s(
                    "by stored orders",
                    col(|r| r.oversold_units_by_orders as f64),
                ),
            ],
        },
        Panel {
            title: format!("{scenario}: unsold, demand > stock"),
            y_desc: "units",
            log: false,
            series: vec![s(
                "units left unsold",
                col(|r| r.unsold_units_with_excess_demand as f64),
            )],
        },
        Panel {
            title: format!("{scenario}: orders accepted vs persisted"),
            y_desc: "units",
            log: false,
            series: vec![
                s(
                    "accepted (answers)",
                    col(|r| r.report.accepted_units as f64),
                ),
                s("stored at load end", col(|r| r.stored_units_at_end as f64)),
                s("stored, settled", col(|r| r.stored_units as f64)),
            ],
        },
        Panel {
            title: format!("{scenario}: CPU per 1 000 requests"),
            y_desc: "CPU s",
            log: false,
            series: vec![
                s("own processes", cpu(|c| c.system_cpu_s_per_1k_requests)),
                s("stores", cpu(|c| c.stores_cpu_s_per_1k_requests)),
            ],
        },
    ]
}

/// The y range of a panel: from 0 (or 10^-1 on log panels) to a bit above
/// the largest value, never empty.
fn y_range(panel: &Panel) -> (f64, f64) {
    let max = panel
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0_f64, f64::max);
    if panel.log {
        // Headroom above the tallest bar for its label and the legend.
        (-1.0, (max.max(1.0)).log10().ceil() + 0.8)
    } else {
        (0.0, if max > 0.0 { max * 1.4 } else { 1.0 })
    }
}

fn draw_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    systems: &[String],
    panel: &Panel,
) -> anyhow::Result<()> {
    let (y_min, y_max) = y_range(panel);
    let n = systems.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y_min..y_max)
        .map_err(plot_error)?;
    let log = panel.log;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                systems.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(panel.y_desc)
        .y_label_formatter(&|y| {
            if log {
                short(10f64.powf(*y))
            } else {
                short(*y)
            }
        })
        .draw()
        .map_err(plot_error)?;
    draw_bars(&mut chart, panel, y_min)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// The panel's bars, one colour per series, each labelled with its value.
fn draw_bars<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    panel: &Panel,
    y_min: f64,
) -> anyhow::Result<()> {
    let log = panel.log;
    let groups = panel.series.len().max(1) as f64;
    let width = 0.8 / groups;
    let height = move |v: f64| if log { v.max(0.1).log10() } else { v };
    for (k, series) in panel.series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let bars = series.values.iter().enumerate().map(move |(i, &v)| {
            let x0 = i as f64 - 0.4 + k as f64 * width;
            Rectangle::new(
                [(x0, y_min), (x0 + width * 0.95, height(v))],
                color.filled(),
            )
        });
        chart
            .draw_series(bars)
            .map_err(plot_error)?
            .label(series.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        let labels = series.values.iter().enumerate().map(move |(i, &v)| {
            let x = i as f64 - 0.4 + (k as f64 + 0.5) * width;
            Text::new(
                short(v),
                (x, height(v)),
                ("sans-serif", 10).into_font().color(&BLACK),
            )
        });
        chart.draw_series(labels).map_err(plot_error)?;
    }
    Ok(())
}

/// Size of the sweep chart.
const SWEEP_SIZE: (u32, u32) = (1000, 640);
/// One colour per system of the sweep chart (wrapping past eight).
const SWEEP_PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];
/// The p99 limit's line.
const LIMIT_COLOR: RGBColor = RGBColor(214, 39, 40);
/// Lowest latency a log axis shows (ms): the histogram's floor is 1 µs.
const LATENCY_FLOOR_MS: f64 = 0.1;

/// The sweep chart's axes, log scale both.
type SweepChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

/// Renders the sweep: for each system, p99 (solid) and p50 (dashed) against
/// the offered rate, a cross on the step that failed, a triangle on the
/// half-rate step's p99, and the p99 limit across.
pub fn render_sweep(
    sweeps: &BTreeMap<String, SystemSweep>,
    p99_max_ms: f64,
    caption: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SWEEP_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let ((x0, x1), (y0, y1)) = sweep_ranges(sweeps, p99_max_ms);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("offered rate, requests/s (log scale)")
        .y_desc("latency from intended send, ms (log scale)")
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .draw()
        .map_err(plot_error)?;
    let limit = [(x0, p99_max_ms), (x1, p99_max_ms)];
    chart
        .draw_series(DashedLineSeries::new(
            limit,
            8,
            5,
            LIMIT_COLOR.stroke_width(2),
        ))
        .map_err(plot_error)?
        .label(format!("p99 limit {} ms", short(p99_max_ms)))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], LIMIT_COLOR.stroke_width(2)));
    for (i, (system, sweep)) in sweeps.iter().enumerate() {
        draw_sweep(
            &mut chart,
            system,
            sweep,
            SWEEP_PALETTE[i % SWEEP_PALETTE.len()],
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// Offered rates and latencies to fit, with headroom for the legend; a
/// sweep without steps still gets a drawable (non-empty) range.
fn sweep_ranges(
    sweeps: &BTreeMap<String, SystemSweep>,
    p99_max_ms: f64,
) -> ((f64, f64), (f64, f64)) {
    let steps = || {
        sweeps
            .values()
            .flat_map(|s| s.steps.iter().chain(&s.half_rate))
    };
    let rates = steps().map(|s| s.offered_rps).filter(|r| *r > 0.0);
    let (r_min, r_max) = rates.fold((f64::INFINITY, 0.0_f64), |(lo, hi), r| {
        (lo.min(r), hi.max(r))
    });
    let (r_min, r_max) = if r_max > 0.0 {
        (r_min, r_max)
    } else {
        (100.0, 1000.0)
    };
    let lat_min = steps().map(|s| s.p50_ms).fold(p99_max_ms, f64::min);
    let lat_max = steps().map(|s| s.p99_ms).fold(p99_max_ms, f64::max);
    (
        (r_min / 1.3, r_max * 1.3),
        ((lat_min / 2.0).max(LATENCY_FLOOR_MS), lat_max * 4.0),
    )
}

/// One system's lines and markers.
fn draw_sweep<DB: DrawingBackend>(
    chart: &mut SweepChart<'_, DB>,
    system: &str,
    sweep: &SystemSweep,
    color: RGBColor,
) -> anyhow::Result<()> {
    let at = |rps: f64, ms: f64| (rps, ms.max(LATENCY_FLOOR_MS));
    let p99: Vec<(f64, f64)> = sweep
        .steps
        .iter()
        .map(|s| at(s.offered_rps, s.p99_ms))
        .collect();
    let p50: Vec<(f64, f64)> = sweep
        .steps
        .iter()
        .map(|s| at(s.offered_rps, s.p50_ms))
        .collect();
    let solid = color.stroke_width(2);
    chart
        .draw_series(LineSeries::new(p99.clone(), solid).point_size(3))
        .map_err(plot_error)?
        .label(format!("{system} p99"))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], solid));
    let thin = color.stroke_width(1);
    chart
        .draw_series(DashedLineSeries::new(p50, 5, 4, thin))
        .map_err(plot_error)?
        .label(format!("{system} p50"))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 5, y)], thin));
    let failed = sweep.steps.iter().filter(|s| !s.passed);
    let crosses = failed.map(|s| Cross::new(at(s.offered_rps, s.p99_ms), 7, solid));
    chart.draw_series(crosses).map_err(plot_error)?;
    if let Some(h) = &sweep.half_rate {
        let marker = TriangleMarker::new(at(h.offered_rps, h.p99_ms), 7, color.filled());
        chart
            .draw_series(std::iter::once(marker))
            .map_err(plot_error)?
            .label(format!("{system} half rate p99 {} ms", short(h.p99_ms)))
            .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 5, color.filled()));
    }
    Ok(())
}

/// 1234567 -> "1.2M", 0.25 -> "0.25": axis and bar labels stay short.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::{StopReason, SweepStep};

    /// Proves labels stay short and readable across magnitudes.
    #[test]
    fn short_labels() {
        assert_eq!(short(1_234_567.0), "1.2M");
        assert_eq!(short(45_000.0), "45k");
        assert_eq!(short(250.4), "250");
        assert_eq!(short(3.0), "3");
        assert_eq!(short(2.54), "2.5");
        assert_eq!(short(0.25), "0.25");
    }

    /// A sweep step at `rps` with the given p50 and p99, passed or not.
    fn step(rps: f64, p50_ms: f64, p99_ms: f64, passed: bool) -> SweepStep {
        SweepStep {
            step: Some(0),
            offered_rps: rps,
            duration_s: 1.0,
            requests: rps as u64,
            achieved_rps: rps,
            answered_rps: rps,
            p50_ms,
            p90_ms: p99_ms,
            p99_ms,
            p99_9_ms: p99_ms,
            max_ms: p99_ms,
            send_lag_p99_ms: 0.0,
            service_p99_ms: p99_ms,
            in_flight_cap_waits: 0,
            errors: 0,
            errors_by_kind: BTreeMap::new(),
            accepted: 1,
            accepted_units: 1,
            sold_out: 1,
            rejected_other: BTreeMap::new(),
            stock_per_product: 1,
            total_stock: 1,
            demand_units: 2,
            oversold_units: 0,
            stored_units: 1,
            settle_s: 0.0,
            cpu_s_per_1k_requests: None,
            product_prefix: "p-".into(),
            passed,
            failure: None,
        }
    }

    /// Proves the sweep chart is written as an SVG with a line per system
    /// and percentile, the limit and the legend's names, and that a sweep
    /// without steps (the first one could not run) still renders.
    #[test]
    fn sweep_chart_is_written() {
        let sweep = |steps: Vec<SweepStep>, half: Option<SweepStep>| SystemSweep {
            steps,
            highest_sustainable_rps: Some(750.0),
            highest_is_lower_bound: false,
            stop_reason: StopReason::P99OverLimit,
            stop_detail: String::new(),
            half_rate: half,
            half_rate_note: None,
        };
        let mut sweeps = BTreeMap::new();
        let steps = vec![step(500.0, 5.0, 20.0, true), step(750.0, 8.0, 60.0, true)];
        let failed = step(1125.0, 40.0, 400.0, false);
        let half = step(375.0, 4.0, 12.0, true);
        sweeps.insert(
            "pipeline".to_owned(),
            sweep([steps, vec![failed]].concat(), Some(half)),
        );
        sweeps.insert("redis-lua".to_owned(), sweep(Vec::new(), None));
        let dir = std::env::temp_dir().join(format!("flashsale-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sweep.svg");
        render_sweep(&sweeps, 100.0, "sweep", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in [
            "pipeline p99",
            "pipeline p50",
            "redis-lua p99",
            "p99 limit 100 ms",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.matches("<polyline").count() >= 3, "lines missing");
    }
}
