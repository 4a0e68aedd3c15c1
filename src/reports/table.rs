//! A computed table and the same table after disclosure control.
//!
//! A [`Grid`] holds the raw counts (and, for a duration metric, each row's durations); it
//! never leaves the gateway and its `Debug` shows only its shape. [`ProtectedTable::new`] runs
//! the suppression over the grid and its margins and keeps only what may be published: counts
//! that are 0 or at least 11 and reveal no withheld count, rates whose numerator and
//! denominator are both published, and medians and 90th percentiles of rows whose count is
//! published.

use std::fmt;

use serde::Serialize;

use super::definition::{Metric, RateDef, TableDef};
use super::suppress::{self, Layout, Position, Protection};

/// Raw counts of one table: `cells[r * ncols + c]`.
#[derive(Clone, PartialEq)]
pub struct Grid {
    /// Row labels.
    pub rows: Vec<String>,
    /// Column labels.
    pub columns: Vec<String>,
    /// Counts, row-major.
    pub cells: Vec<i64>,
    /// For a duration metric: each row's durations in hours (one column of counts).
    pub durations: Option<Vec<Vec<f64>>>,
}

impl fmt::Debug for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grid")
            .field("rows", &self.rows.len())
            .field("columns", &self.columns.len())
            .finish_non_exhaustive()
    }
}

/// A rate per row, published or withheld.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedRate {
    /// Id, e.g. `diversion`.
    pub id: String,
    /// What it is.
    pub title: String,
    /// Percent per row, one decimal (`null`: withheld, or no units in the row).
    pub rows: Vec<Option<f64>>,
    /// Whether each row's rate was withheld by disclosure control.
    pub withheld: Vec<bool>,
    /// Percent over the whole table (`null`: withheld or no units).
    pub total: Option<f64>,
    /// Whether the overall rate was withheld.
    pub total_withheld: bool,
}

/// Medians and 90th percentiles of a duration table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedDurations {
    /// What is measured.
    pub measure: String,
    /// The unit.
    pub unit: &'static str,
    /// How the percentiles are computed.
    pub method: &'static str,
    /// Median per row (`null`: withheld, or no units).
    pub median: Vec<Option<f64>>,
    /// 90th percentile per row.
    pub p90: Vec<Option<f64>>,
    /// Whether each row's statistics were withheld.
    pub withheld: Vec<bool>,
    /// Median over every row.
    pub total_median: Option<f64>,
    /// 90th percentile over every row.
    pub total_p90: Option<f64>,
    /// Whether the overall statistics were withheld.
    pub total_withheld: bool,
}

/// How many numbers of a table were withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SuppressionSummary {
    /// Counts (cells and margins) in the table.
    pub counts: usize,
    /// Withheld because they are from 1 to 10.
    pub primary: usize,
    /// Withheld so that no small count can be derived from the rest.
    pub complementary: usize,
    /// Rates and statistics withheld with them.
    pub derived: usize,
}

/// A table as it may leave the gateway. `null` marks a withheld count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProtectedTable {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// The metric.
    pub metric: Metric,
    /// What is counted.
    pub unit: &'static str,
    /// Row dimension and labels.
    pub rows: Axis,
    /// Column dimension and labels.
    pub columns: Axis,
    /// Counts per row and column.
    pub cells: Vec<Vec<Option<i64>>>,
    /// Row totals (two-way tables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_totals: Option<Vec<Option<i64>>>,
    /// Column totals (two-way tables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column_totals: Option<Vec<Option<i64>>>,
    /// The grand total (`null` when withheld; absent for a one-cell table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<Option<i64>>,
    /// Percentages per row.
    pub rates: Vec<PublishedRate>,
    /// Medians and 90th percentiles, for a duration metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durations: Option<PublishedDurations>,
    /// What was withheld.
    pub suppression: SuppressionSummary,
}

/// A dimension and its labels as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Axis {
    /// The dimension's name.
    pub dimension: String,
    /// The labels, in order.
    pub labels: Vec<String>,
}

/// Percent with one decimal.
fn percent(num: i64, den: i64) -> Option<f64> {
    (den > 0).then(|| ((num as f64) * 1000.0 / (den as f64)).round() / 10.0)
}

/// The nearest-rank percentile `p` (0 to 1) of sorted `values`, rounded to one decimal.
pub fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).map(|v| (v * 10.0).round() / 10.0)
}

impl ProtectedTable {
    /// Applies disclosure control to `grid` for the table `def`: counts, margins, rates and
    /// duration statistics.
    pub fn new(def: &TableDef, grid: &Grid) -> Self {
        let nrows = grid.rows.len();
        let ncols = grid.columns.len();
        let layout = Layout::new(nrows, ncols);
        let protection = suppress::protect(&layout, &grid.cells);
        let shown = |p: Position| -> Option<i64> {
            let q = layout.index(p)?;
            protection
                .published(q)
                .then(|| layout.value(&grid.cells, q))
        };
        let cells: Vec<Vec<Option<i64>>> = (0..nrows)
            .map(|r| (0..ncols).map(|c| shown(Position::Cell(r, c))).collect())
            .collect();
        let two_way = nrows > 1 && ncols > 1;
        let row_totals =
            two_way.then(|| (0..nrows).map(|r| shown(Position::RowTotal(r))).collect());
        let column_totals = two_way.then(|| {
            (0..ncols)
                .map(|c| shown(Position::ColumnTotal(c)))
                .collect()
        });
        let total = (nrows * ncols > 1).then(|| shown(Position::Total));
        let mut derived = 0;
        let rates: Vec<PublishedRate> = def
            .rates
            .iter()
            .map(|rate| {
                let r = rate_of(rate, grid, &layout, &protection);
                derived += r.withheld.iter().filter(|w| **w).count();
                derived += usize::from(r.total_withheld);
                r
            })
            .collect();
        let durations = grid.durations.as_ref().map(|d| {
            let s = durations_of(def, d, &layout, &protection);
            derived += s.withheld.iter().filter(|w| **w).count();
            derived += usize::from(s.total_withheld);
            s
        });
        Self {
            id: def.id.clone(),
            title: def.title.clone(),
            metric: def.metric,
            unit: def.metric.unit(),
            rows: Axis {
                dimension: def.rows.kind.as_str().to_owned(),
                labels: grid.rows.clone(),
            },
            columns: Axis {
                dimension: def
                    .columns
                    .as_ref()
                    .map_or("count", |c| c.kind.as_str())
                    .to_owned(),
                labels: grid.columns.clone(),
            },
            cells,
            row_totals,
            column_totals,
            total,
            rates,
            durations,
            suppression: SuppressionSummary {
                counts: layout.quantities().len(),
                primary: protection.primary_count(),
                complementary: protection.complementary_count(),
                derived,
            },
        }
    }

    /// Every published count (cells, margins, total), for checks.
    pub fn published_counts(&self) -> impl Iterator<Item = i64> + '_ {
        self.cells
            .iter()
            .flatten()
            .chain(self.row_totals.iter().flatten())
            .chain(self.column_totals.iter().flatten())
            .chain(self.total.iter())
            .filter_map(|v| *v)
    }
}

/// A rate over each row (denominator: the row total, or the total of a one-row table) and over
/// the whole table (denominator: the grand total, numerator: the column totals). Published only
/// when the denominator is, and the numerator is a sum of published cells or the denominator
/// minus a sum of published cells.
fn rate_of(rate: &RateDef, grid: &Grid, layout: &Layout, p: &Protection) -> PublishedRate {
    let nrows = layout.nrows();
    let ncols = layout.ncols();
    let inside: Vec<bool> = grid
        .columns
        .iter()
        .map(|c| rate.share_of.contains(c))
        .collect();
    let published = |pos: Position| layout.index(pos).is_some_and(|q| p.published(q));
    let value = |pos: Position| {
        layout
            .index(pos)
            .map_or(0, |q| layout.value(&grid.cells, q))
    };
    let row_den = |r: usize| {
        if nrows == 1 {
            Position::Total
        } else {
            Position::RowTotal(r)
        }
    };
    let determined = |parts: &dyn Fn(usize) -> Position| {
        let ins = (0..ncols)
            .filter(|c| inside.get(*c).copied().unwrap_or(false))
            .all(|c| published(parts(c)));
        let outs = (0..ncols)
            .filter(|c| !inside.get(*c).copied().unwrap_or(false))
            .all(|c| published(parts(c)));
        ins || outs
    };
    let numerator = |parts: &dyn Fn(usize) -> Position| -> i64 {
        (0..ncols)
            .filter(|c| inside.get(*c).copied().unwrap_or(false))
            .map(|c| value(parts(c)))
            .sum()
    };
    let mut rows = Vec::with_capacity(nrows);
    let mut withheld = Vec::with_capacity(nrows);
    for r in 0..nrows {
        let part = move |c: usize| Position::Cell(r, c);
        let ok = ncols > 1 && published(row_den(r)) && determined(&part);
        withheld.push(!ok);
        rows.push(if ok {
            percent(numerator(&part), value(row_den(r)))
        } else {
            None
        });
    }
    let (total, total_withheld) = if nrows == 1 {
        (
            rows.first().copied().flatten(),
            withheld.first().copied().unwrap_or(true),
        )
    } else {
        let part = |c: usize| Position::ColumnTotal(c);
        let ok = ncols > 1 && published(Position::Total) && determined(&part);
        (
            if ok {
                percent(numerator(&part), value(Position::Total))
            } else {
                None
            },
            !ok,
        )
    };
    PublishedRate {
        id: rate.id.clone(),
        title: rate.title.clone(),
        rows,
        withheld,
        total,
        total_withheld,
    }
}

fn durations_of(
    def: &TableDef,
    per_row: &[Vec<f64>],
    layout: &Layout,
    p: &Protection,
) -> PublishedDurations {
    let published = |pos: Position| layout.index(pos).is_some_and(|q| p.published(q));
    let mut median = Vec::new();
    let mut p90 = Vec::new();
    let mut withheld = Vec::new();
    let mut all: Vec<f64> = Vec::new();
    for (r, values) in per_row.iter().enumerate() {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        all.extend(sorted.iter().copied());
        let ok = published(Position::Cell(r, 0));
        withheld.push(!ok);
        median.push(if ok { nearest_rank(&sorted, 0.5) } else { None });
        p90.push(if ok { nearest_rank(&sorted, 0.9) } else { None });
    }
    all.sort_by(f64::total_cmp);
    let total_ok = if layout.nrows() > 1 {
        published(Position::Total)
    } else {
        published(Position::Cell(0, 0))
    };
    let what = match def.metric {
        Metric::TimeToEngagement => "from submission of the referral to engagement",
        _ => "from submission of the referral to the first contact attempt",
    };
    PublishedDurations {
        measure: format!("hours {what}"),
        unit: "hours",
        method: "nearest rank",
        median,
        p90,
        withheld,
        total_median: if total_ok {
            nearest_rank(&all, 0.5)
        } else {
            None
        },
        total_p90: if total_ok {
            nearest_rank(&all, 0.9)
        } else {
            None
        },
        total_withheld: !total_ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::definition::{Dimension, DimensionKind};
    use std::collections::BTreeMap;

    fn def(rates: Vec<RateDef>) -> TableDef {
        TableDef {
            id: "t".into(),
            title: "t".into(),
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
            rates,
        }
    }

    fn grid(rows: &[&[i64]]) -> Grid {
        Grid {
            rows: (0..rows.len()).map(|r| format!("r{r}")).collect(),
            columns: vec!["ARREST".into(), "REFERRED".into(), "OTHER".into()],
            cells: rows.iter().flat_map(|r| r.iter().copied()).collect(),
            durations: None,
        }
    }

    fn diversion() -> RateDef {
        RateDef {
            id: "diversion".into(),
            title: "not arrested".into(),
            share_of: vec!["REFERRED".into(), "OTHER".into()],
        }
    }

    #[test]
    fn a_percentage_that_would_reveal_a_small_cell_is_withheld() {
        // Row 0: 5 arrests of 75; publishing 93.3% diversion with the total 75 gives the 5.
        let g = grid(&[&[5, 40, 30], &[20, 25, 33], &[30, 31, 32]]);
        let t = ProtectedTable::new(&def(vec![diversion()]), &g);
        assert_eq!(t.cells[0][0], None);
        let rate = &t.rates[0];
        assert!(rate.withheld[0] && rate.rows[0].is_none(), "{rate:?}");
        // Rows whose cells are all published keep their rate.
        let published_rows: Vec<usize> = (0..3)
            .filter(|r| {
                t.cells[*r].iter().all(Option::is_some)
                    && t.row_totals.as_ref().unwrap()[*r].is_some()
            })
            .collect();
        for r in published_rows {
            assert!(!rate.withheld[r]);
            assert!(rate.rows[r].is_some());
        }
        assert!(t.published_counts().all(|v| !suppress::is_small(v)));
    }

    #[test]
    fn a_rate_is_the_share_of_the_row_in_the_listed_categories() {
        let g = grid(&[&[20, 40, 40], &[50, 25, 25]]);
        let t = ProtectedTable::new(&def(vec![diversion()]), &g);
        assert_eq!(t.rates[0].rows, vec![Some(80.0), Some(50.0)]);
        assert_eq!(t.rates[0].total, Some(65.0));
        assert_eq!(t.suppression.primary + t.suppression.complementary, 0);
    }

    #[test]
    fn durations_are_withheld_with_their_count() {
        let mut d = def(vec![]);
        d.metric = Metric::TimeToContactAttempt;
        d.columns = None;
        let rows = [
            (0..5).map(|h| h as f64).collect::<Vec<_>>(),
            (0..20).map(|h| h as f64).collect(),
            (0..30).map(|h| h as f64 * 2.0).collect(),
        ];
        let g = Grid {
            rows: vec!["a".into(), "b".into(), "c".into()],
            columns: vec!["referrals".into()],
            cells: rows.iter().map(|r| r.len() as i64).collect(),
            durations: Some(rows.to_vec()),
        };
        let t = ProtectedTable::new(&d, &g);
        let s = t.durations.as_ref().unwrap();
        assert!(s.withheld[0] && s.median[0].is_none());
        assert_eq!(t.cells[0][0], None);
        // The 5 is derivable from the total unless another row is withheld too.
        assert!(t.cells[1][0].is_none() || t.cells[2][0].is_none());
        for r in 1..3 {
            assert_eq!(s.withheld[r], t.cells[r][0].is_none());
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(5.0));
        assert_eq!(nearest_rank(&v, 0.9), Some(9.0));
        assert_eq!(nearest_rank(&[7.25], 0.9), Some(7.3));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }
}
