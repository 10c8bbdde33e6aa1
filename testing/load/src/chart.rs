//! The benchmark's SVG chart: one row per scenario, one panel per question
//! (how fast, how slow, oversold?, unsold?, persisted?, how much CPU?), one
//! bar group per system.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::cost::CostReport;
use crate::scenario::ScenarioResult;

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
}
