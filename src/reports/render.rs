//! A released report as CSV and SVG.
//!
//! - [`to_csv`]: one long table for the whole report (one line per published or withheld
//!   number: table, row, column, measure, value, status), for machines.
//! - [`table_csv`]: one table as people read it (rows, columns, totals, rates); `*` marks a
//!   withheld number and the last line says why.
//! - [`table_svg`]: one bar chart per table (hand-written SVG: no fonts to embed, no
//!   dependency, byte-for-byte reproducible); withheld bars are drawn as a hatched stub marked
//!   `*`, the first rate as a line on a percent axis.
//!
//! Only a [`Released`] report can be rendered, so nothing withheld can reach a file. Every CSV
//! cell that a spreadsheet could run as a formula is defused, and every SVG text is escaped.

use std::fmt::Write as _;

use super::Released;
use super::table::ProtectedTable;
use crate::audit::accounting::csv_field;

/// The note closing a table's CSV.
pub const WITHHELD_NOTE: &str = "* withheld under the CMS cell size suppression policy (counts \
     from 1 to 10, and counts, totals or percentages from which one could be derived)";

fn num(v: Option<i64>) -> String {
    v.map_or_else(|| "*".to_owned(), |v| v.to_string())
}

fn pct(v: Option<f64>, withheld: bool) -> String {
    match (v, withheld) {
        (_, true) => "*".to_owned(),
        (Some(v), false) => format!("{v:.1}"),
        (None, false) => String::new(),
    }
}

/// The whole report as one long CSV: `table,table_title,row_dimension,row,column_dimension,
/// column,measure,value,status` (status `published`, `withheld` or `none` for a rate without
/// units), CRLF line ends.
pub fn to_csv(r: &Released) -> String {
    let mut out = String::from(
        "report,period_from,period_to,table,table_title,row_dimension,row,column_dimension,\
         column,measure,value,status\r\n",
    );
    let from = r
        .period
        .from
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = r
        .period
        .to
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for t in &r.tables {
        let mut line = |row: &str, col: &str, measure: &str, value: String, status: &str| {
            let fields = [
                csv_field(&r.report),
                csv_field(&from),
                csv_field(&to),
                csv_field(&t.id),
                csv_field(&t.title),
                csv_field(&t.rows.dimension),
                csv_field(row),
                csv_field(&t.columns.dimension),
                csv_field(col),
                csv_field(measure),
                value,
                status.to_owned(),
            ];
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        };
        let count = |v: Option<i64>| -> (String, &'static str) {
            match v {
                Some(v) => (v.to_string(), "published"),
                None => (String::new(), "withheld"),
            }
        };
        for (r_i, row) in t.rows.labels.iter().enumerate() {
            for (c_i, col) in t.columns.labels.iter().enumerate() {
                let v = t.cells.get(r_i).and_then(|c| c.get(c_i)).copied().flatten();
                let (v, s) = count(v);
                line(row, col, "count", v, s);
            }
            if let Some(v) = t.row_totals.as_ref().and_then(|v| v.get(r_i)) {
                let (v, s) = count(*v);
                line(row, "Total", "count", v, s);
            }
        }
        if let Some(cols) = &t.column_totals {
            for (c_i, col) in t.columns.labels.iter().enumerate() {
                let (v, s) = count(cols.get(c_i).copied().flatten());
                line("Total", col, "count", v, s);
            }
        }
        if let Some(total) = t.total {
            let (v, s) = count(total);
            line("Total", "Total", "count", v, s);
        }
        let ratio = |v: Option<f64>, withheld: bool| -> (String, &'static str) {
            match (v, withheld) {
                (_, true) => (String::new(), "withheld"),
                (Some(v), false) => (format!("{v:.1}"), "published"),
                (None, false) => (String::new(), "none"),
            }
        };
        for rate in &t.rates {
            let measure = format!("percent:{}", rate.id);
            for (r_i, row) in t.rows.labels.iter().enumerate() {
                let (v, s) = ratio(
                    rate.rows.get(r_i).copied().flatten(),
                    rate.withheld.get(r_i).copied().unwrap_or(true),
                );
                line(row, "", &measure, v, s);
            }
            if t.rows.labels.len() > 1 {
                let (v, s) = ratio(rate.total, rate.total_withheld);
                line("Total", "", &measure, v, s);
            }
        }
        if let Some(d) = &t.durations {
            for (r_i, row) in t.rows.labels.iter().enumerate() {
                let withheld = d.withheld.get(r_i).copied().unwrap_or(true);
                let (v, s) = ratio(d.median.get(r_i).copied().flatten(), withheld);
                line(row, "", "median_hours", v, s);
                let (v, s) = ratio(d.p90.get(r_i).copied().flatten(), withheld);
                line(row, "", "p90_hours", v, s);
            }
            if t.rows.labels.len() > 1 {
                let (v, s) = ratio(d.total_median, d.total_withheld);
                line("Total", "", "median_hours", v, s);
                let (v, s) = ratio(d.total_p90, d.total_withheld);
                line("Total", "", "p90_hours", v, s);
            }
        }
    }
    out
}

/// One table as people read it: a header, one line per row, a total line, the note.
pub fn table_csv(t: &ProtectedTable) -> String {
    let mut header: Vec<String> = vec![csv_field(&t.rows.dimension)];
    header.extend(t.columns.labels.iter().map(|c| csv_field(c)));
    let two_way = t.row_totals.is_some();
    if two_way {
        header.push("Total".to_owned());
    }
    for rate in &t.rates {
        header.push(csv_field(&format!("{} (%)", rate.title)));
    }
    if t.durations.is_some() {
        header.push("median hours".to_owned());
        header.push("90th percentile hours".to_owned());
    }
    let mut out = header.join(",");
    out.push_str("\r\n");
    for (r_i, row) in t.rows.labels.iter().enumerate() {
        let mut line = vec![csv_field(row)];
        if let Some(cells) = t.cells.get(r_i) {
            line.extend(cells.iter().map(|v| num(*v)));
        }
        if let Some(rt) = &t.row_totals {
            line.push(num(rt.get(r_i).copied().flatten()));
        }
        for rate in &t.rates {
            line.push(pct(
                rate.rows.get(r_i).copied().flatten(),
                rate.withheld.get(r_i).copied().unwrap_or(true),
            ));
        }
        if let Some(d) = &t.durations {
            let w = d.withheld.get(r_i).copied().unwrap_or(true);
            line.push(pct(d.median.get(r_i).copied().flatten(), w));
            line.push(pct(d.p90.get(r_i).copied().flatten(), w));
        }
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    if t.rows.labels.len() > 1 || two_way {
        let mut line = vec!["Total".to_owned()];
        match &t.column_totals {
            Some(ct) => line.extend(ct.iter().map(|v| num(*v))),
            None => line.push(num(t.total.flatten())),
        }
        if two_way {
            line.push(num(t.total.flatten()));
        }
        for rate in &t.rates {
            line.push(pct(rate.total, rate.total_withheld));
        }
        if let Some(d) = &t.durations {
            line.push(pct(d.total_median, d.total_withheld));
            line.push(pct(d.total_p90, d.total_withheld));
        }
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out.push_str(&csv_field(WITHHELD_NOTE));
    out.push_str("\r\n");
    out
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Okabe-Ito colours (distinguishable with common colour-vision deficiencies).
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
];

/// A step of 1, 2 or 5 times a power of ten giving about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A chart's series: its name and one value per row (`None` when withheld).
type Series = (String, Vec<Option<f64>>);

/// One table as a bar chart: a group of bars per row, a bar per column (for a duration table:
/// the median and the 90th percentile); the first rate, if any, as a line on a percent axis.
pub fn table_svg(report_title: &str, period: &str, t: &ProtectedTable) -> String {
    let (series, unit): (Vec<Series>, String) = match &t.durations {
        Some(d) => (
            vec![
                ("median".to_owned(), d.median.clone()),
                ("90th percentile".to_owned(), d.p90.clone()),
            ],
            "hours".to_owned(),
        ),
        None => (
            t.columns
                .labels
                .iter()
                .enumerate()
                .map(|(c, label)| {
                    let values = t
                        .cells
                        .iter()
                        .map(|row| row.get(c).copied().flatten().map(|v| v as f64))
                        .collect();
                    (label.clone(), values)
                })
                .collect(),
            t.unit.to_owned(),
        ),
    };
    let groups = t.rows.labels.len().max(1);
    let per_group = series.len().max(1);
    let bar_w = 12.0_f64;
    let group_w = bar_w * per_group as f64 + 16.0;
    let left = 70.0;
    let right = if t.rates.is_empty() { 30.0 } else { 60.0 };
    let top = 70.0;
    let plot_h = 300.0;
    let legend_rows = series.len().div_ceil(4);
    let bottom = 90.0 + 18.0 * legend_rows as f64;
    let plot_w = (group_w * groups as f64).max(600.0);
    let width = left + plot_w + right;
    let height = top + plot_h + bottom;
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0_f64, |a, b| a.max(*b))
        .max(1.0);
    let step = tick_step(max);
    let y_max = (max / step).ceil() * step;
    let y = |v: f64| top + plot_h - v / y_max * plot_h;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <defs><pattern id=\"withheld\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#ffffff\"/>\
         <line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#888888\" stroke-width=\"2\"/>\
         </pattern></defs>\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
    );
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>",
        esc(&t.title)
    );
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"44\" fill=\"#444444\">{} · {}</text>",
        esc(report_title),
        esc(period)
    );
    // Axis and grid.
    let mut tick = 0.0;
    while tick <= y_max + 1e-9 {
        let ty = y(tick);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#dddddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{tick}</text>",
            left + plot_w,
            left - 6.0,
            ty + 4.0
        );
        tick += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">{}</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        esc(&unit)
    );
    // Bars.
    let slot = plot_w / groups as f64;
    for g in 0..groups {
        let gx = left + slot * g as f64 + (slot - bar_w * per_group as f64) / 2.0;
        for (k, (_, values)) in series.iter().enumerate() {
            let x = gx + bar_w * k as f64;
            let colour = PALETTE.get(k % PALETTE.len()).copied().unwrap_or("#000000");
            match values.get(g).copied().flatten() {
                Some(v) => {
                    let _ = writeln!(
                        s,
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>",
                        y(v),
                        bar_w - 1.0,
                        (top + plot_h - y(v)).max(0.0)
                    );
                }
                None => {
                    let stub = 14.0;
                    let _ = writeln!(
                        s,
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{stub}\" \
                         fill=\"url(#withheld)\" stroke=\"{colour}\"/><text x=\"{:.1}\" \
                         y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">*</text>",
                        top + plot_h - stub,
                        bar_w - 1.0,
                        x + bar_w / 2.0,
                        top + plot_h - stub - 2.0
                    );
                }
            }
        }
        let lx = left + slot * g as f64 + slot / 2.0;
        let ly = top + plot_h + 14.0;
        let label = t.rows.labels.get(g).map(String::as_str).unwrap_or("");
        let _ = writeln!(
            s,
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" font-size=\"10\" \
             transform=\"rotate(-35 {lx:.1} {ly:.1})\">{}</text>",
            esc(label)
        );
    }
    // The first rate as a line on a percent axis.
    if let Some(rate) = t.rates.first() {
        let py = |v: f64| top + plot_h - v / 100.0 * plot_h;
        let ax = left + plot_w;
        for p in [0.0, 25.0, 50.0, 75.0, 100.0] {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\">{p}%</text>",
                ax + 6.0,
                py(p) + 4.0
            );
        }
        let mut path = String::new();
        let mut pen_up = true;
        for g in 0..groups {
            let x = left + slot * g as f64 + slot / 2.0;
            match rate.rows.get(g).copied().flatten() {
                Some(v) => {
                    let _ = write!(
                        path,
                        "{}{x:.1} {:.1} ",
                        if pen_up { "M" } else { "L" },
                        py(v)
                    );
                    pen_up = false;
                    let _ = writeln!(
                        s,
                        "<circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#333333\"/>",
                        py(v)
                    );
                }
                None => pen_up = true,
            }
        }
        if !path.is_empty() {
            let _ = writeln!(
                s,
                "<path d=\"{}\" fill=\"none\" stroke=\"#333333\" stroke-width=\"2\" \
                 stroke-dasharray=\"6 3\"/>",
                path.trim_end()
            );
        }
    }
    // Legend.
    let ly0 = top + plot_h + 62.0;
    for (k, (label, _)) in series.iter().enumerate() {
        let col = (k % 4) as f64;
        let row = (k / 4) as f64;
        let x = left + col * 190.0;
        let yy = ly0 + row * 18.0;
        let colour = PALETTE.get(k % PALETTE.len()).copied().unwrap_or("#000000");
        let _ = writeln!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{yy:.1}\">{}</text>",
            yy - 9.0,
            x + 14.0,
            esc(label)
        );
    }
    let mut note = String::from("* withheld (CMS cell size suppression)");
    if let Some(rate) = t.rates.first() {
        let _ = write!(note, "; dashed line: {} (%)", rate.title);
    }
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{:.1}\" fill=\"#444444\" font-size=\"11\">{}</text>\n</svg>",
        height - 10.0,
        esc(&note)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::definition::{Dimension, DimensionKind, Metric, RateDef, TableDef};
    use crate::reports::table::Grid;
    use std::collections::BTreeMap;

    fn table() -> ProtectedTable {
        let def = TableDef {
            id: "t".into(),
            title: "Incidents <by> month & \"disposition\"".into(),
            metric: Metric::Incidents,
            rows: Dimension {
                kind: DimensionKind::Month,
                categories: vec![],
            },
            columns: Some(Dimension {
                kind: DimensionKind::Disposition,
                categories: vec![],
            }),
            filters: BTreeMap::new(),
            rates: vec![RateDef {
                id: "arrest".into(),
                title: "=HYPERLINK(\"x\")".into(),
                share_of: vec!["ARREST".into()],
            }],
        };
        let grid = Grid {
            rows: vec![
                "2026-01".into(),
                "2026-02".into(),
                "=cmd|' /C calc'!A0".into(),
            ],
            columns: vec!["ARREST".into(), "REFERRED".into()],
            cells: vec![4, 40, 30, 25, 20, 33],
            durations: None,
        };
        ProtectedTable::new(&def, &grid)
    }

    #[test]
    fn csv_marks_withheld_numbers_and_defuses_formulas() {
        let t = table();
        let csv = table_csv(&t);
        assert!(csv.contains("'=cmd"), "{csv}");
        assert!(csv.contains("'=HYPERLINK"), "{csv}");
        let first = csv.lines().nth(1).unwrap();
        assert!(first.starts_with("2026-01,*,"), "{csv}");
        assert!(!csv.contains(",4,") && !csv.contains(",4\r"), "{csv}");
        assert!(
            csv.trim_end().ends_with('"') || csv.contains("withheld"),
            "{csv}"
        );
    }

    #[test]
    fn svg_escapes_text_and_draws_withheld_bars() {
        let svg = table_svg("Annual <report>", "2026", &table());
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("&lt;by&gt;") && svg.contains("&quot;disposition&quot;"));
        assert!(svg.contains("Annual &lt;report&gt;"));
        assert!(svg.contains("url(#withheld)"));
        assert!(!svg.contains("<by>"));
    }
}
