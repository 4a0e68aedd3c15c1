//! Cell-size suppression with complementary suppression solved over the whole table.
//!
//! The rule is the CMS cell size suppression policy: no published count may be from 1 to 10
//! (zero may show), and no published count, total or percentage may let such a value be
//! derived from the rest. A table here is a grid of non-negative counts with its margins
//! (row totals, column totals and the grand total where the shape has them); every one of them
//! is a *quantity*, the sum of a set of grid cells.
//!
//! [`protect`] decides which quantities are withheld:
//!
//! 1. **Primary suppression**: every quantity from 1 to 10.
//! 2. **Lines**: each row, each column and each line of margins is an equation (the parts add
//!    up to the whole). A line with exactly one withheld member gives that member away, so one
//!    more member is withheld, the smallest non-zero published one first (a zero only when no
//!    other member is left), until no line has exactly one.
//! 3. **Audit, over the whole table**: for every primary cell, the least and the greatest value
//!    it can take given every published quantity (all equations at once, counts never
//!    negative) are computed with a linear program. If they are equal the value can be
//!    recovered exactly; one more quantity that shares a line with it is withheld and the
//!    audit runs again. The constraint matrix of a table with margins is totally unimodular,
//!    so the linear program's bounds are the integer bounds. A solver failure counts as an
//!    exposure (fail closed): at worst everything is withheld.
//!
//! Withholding more never exposes anything (fewer published equations only widen the ranges),
//! so the loop ends, and every primary value is then non-unique. Rates and medians are
//! published only when what they are computed from is (see [`super::table`]).

use microlp::{ComparisonOp, OptimizationDirection, Problem};

/// The smallest count that must be withheld.
pub const MIN_SUPPRESSED: i64 = 1;
/// The largest count that must be withheld; published counts are 0 or at least 11.
pub const MAX_SUPPRESSED: i64 = 10;

/// Whether a count must be withheld (CMS: 1 to 10).
pub fn is_small(v: i64) -> bool {
    (MIN_SUPPRESSED..=MAX_SUPPRESSED).contains(&v)
}

/// Where a quantity sits in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Position {
    /// A grid cell (row, column).
    Cell(usize, usize),
    /// A row's total.
    RowTotal(usize),
    /// A column's total.
    ColumnTotal(usize),
    /// The grand total.
    Total,
}

/// One published-or-withheld number: the sum of some grid cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    /// Where it sits.
    pub position: Position,
    /// The grid cells it adds up (row-major indices).
    pub cells: Vec<usize>,
}

/// An equation of the table: the parts add up to the whole.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    members: Vec<usize>,
}

/// The quantities and equations of an `nrows` × `ncols` table.
///
/// Margins exist where they add information: row and column totals when the table has more
/// than one row and more than one column, a grand total when it has more than one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    nrows: usize,
    ncols: usize,
    quantities: Vec<Quantity>,
    lines: Vec<Line>,
}

impl Layout {
    /// The layout of an `nrows` × `ncols` table.
    pub fn new(nrows: usize, ncols: usize) -> Self {
        let mut quantities = Vec::new();
        for r in 0..nrows {
            for c in 0..ncols {
                quantities.push(Quantity {
                    position: Position::Cell(r, c),
                    cells: vec![r * ncols + c],
                });
            }
        }
        let mut lines = Vec::new();
        let two_way = nrows > 1 && ncols > 1;
        let cell_q = |r: usize, c: usize| r * ncols + c;
        let mut row_totals = Vec::new();
        let mut col_totals = Vec::new();
        if two_way {
            for r in 0..nrows {
                let idx = quantities.len();
                quantities.push(Quantity {
                    position: Position::RowTotal(r),
                    cells: (0..ncols).map(|c| cell_q(r, c)).collect(),
                });
                let mut members: Vec<usize> = (0..ncols).map(|c| cell_q(r, c)).collect();
                members.push(idx);
                lines.push(Line { members });
                row_totals.push(idx);
            }
            for c in 0..ncols {
                let idx = quantities.len();
                quantities.push(Quantity {
                    position: Position::ColumnTotal(c),
                    cells: (0..nrows).map(|r| cell_q(r, c)).collect(),
                });
                let mut members: Vec<usize> = (0..nrows).map(|r| cell_q(r, c)).collect();
                members.push(idx);
                lines.push(Line { members });
                col_totals.push(idx);
            }
        }
        if nrows * ncols > 1 {
            let idx = quantities.len();
            quantities.push(Quantity {
                position: Position::Total,
                cells: (0..nrows * ncols).collect(),
            });
            if two_way {
                let mut a = row_totals.clone();
                a.push(idx);
                lines.push(Line { members: a });
                let mut b = col_totals.clone();
                b.push(idx);
                lines.push(Line { members: b });
            } else {
                let mut members: Vec<usize> = (0..nrows * ncols).collect();
                members.push(idx);
                lines.push(Line { members });
            }
        }
        Self {
            nrows,
            ncols,
            quantities,
            lines,
        }
    }

    /// Rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Every quantity: the cells row by row, then row totals, column totals, the total.
    pub fn quantities(&self) -> &[Quantity] {
        &self.quantities
    }

    /// The index of the quantity at `position`, if the table has it.
    pub fn index(&self, position: Position) -> Option<usize> {
        self.quantities.iter().position(|q| q.position == position)
    }

    /// The value of quantity `q` for the grid `cells` (row-major).
    pub fn value(&self, cells: &[i64], q: usize) -> i64 {
        self.quantities.get(q).map_or(0, |q| {
            q.cells
                .iter()
                .map(|&i| cells.get(i).copied().unwrap_or(0))
                .sum()
        })
    }

    fn is_margin(&self, q: usize) -> bool {
        self.quantities
            .get(q)
            .is_some_and(|q| !matches!(q.position, Position::Cell(..)))
    }
}

/// What [`protect`] decided, per quantity of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// Withheld (primary or complementary).
    pub withheld: Vec<bool>,
    /// Withheld because the value is from 1 to 10.
    pub primary: Vec<bool>,
}

impl Protection {
    /// Whether quantity `q` is published.
    pub fn published(&self, q: usize) -> bool {
        !self.withheld.get(q).copied().unwrap_or(true)
    }

    /// How many quantities were withheld because they are small.
    pub fn primary_count(&self) -> usize {
        self.primary.iter().filter(|p| **p).count()
    }

    /// How many further quantities were withheld so that no small one can be derived.
    pub fn complementary_count(&self) -> usize {
        self.withheld
            .iter()
            .zip(&self.primary)
            .filter(|(w, p)| **w && !**p)
            .count()
    }
}

/// The least and greatest value a quantity can take given the published ones (`None`: no
/// upper limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Least value.
    pub min: i64,
    /// Greatest value, if bounded.
    pub max: Option<i64>,
}

impl Range {
    /// Whether the value is determined exactly.
    pub fn exact(&self) -> bool {
        self.max == Some(self.min)
    }
}

/// Decides which quantities of a table of `cells` (row-major, non-negative) are withheld.
pub fn protect(layout: &Layout, cells: &[i64]) -> Protection {
    let n = layout.quantities.len();
    let values: Vec<i64> = (0..n).map(|q| layout.value(cells, q)).collect();
    let primary: Vec<bool> = values.iter().map(|v| is_small(*v)).collect();
    let mut withheld = primary.clone();
    // A quantity once shown protected stays protected: withholding more only widens ranges.
    let mut safe = vec![false; n];
    loop {
        close_lines(layout, &values, &mut withheld);
        let published: Vec<bool> = withheld.iter().map(|w| !w).collect();
        let exposed = (0..n).find(|&q| {
            if !primary.get(q).copied().unwrap_or(false) || safe.get(q).copied().unwrap_or(false) {
                return false;
            }
            let exposed = range(layout, cells, &published, q).is_none_or(|r| r.exact());
            if !exposed && let Some(s) = safe.get_mut(q) {
                *s = true;
            }
            exposed
        });
        let Some(q) = exposed else { break };
        match complement_for(layout, &values, &withheld, q) {
            Some(extra) => {
                if let Some(w) = withheld.get_mut(extra) {
                    *w = true;
                }
            }
            // Nothing left to withhold: everything already is.
            None => break,
        }
    }
    Protection { withheld, primary }
}

/// Withholds one more member of every line that has exactly one withheld member, until none
/// has.
fn close_lines(layout: &Layout, values: &[i64], withheld: &mut [bool]) {
    loop {
        let mut changed = false;
        for line in &layout.lines {
            let count = line
                .members
                .iter()
                .filter(|&&m| withheld.get(m).copied().unwrap_or(false))
                .count();
            if count != 1 {
                continue;
            }
            if let Some(pick) = cheapest(layout, values, withheld, line.members.iter().copied())
                && let Some(w) = withheld.get_mut(pick)
            {
                *w = true;
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// The published candidate that costs least to withhold: a non-zero one before a zero (a
/// withheld zero can only grow, so it hides less), then the smallest value, then a cell
/// before a margin, then the first in table order.
fn cheapest(
    layout: &Layout,
    values: &[i64],
    withheld: &[bool],
    candidates: impl Iterator<Item = usize>,
) -> Option<usize> {
    candidates
        .filter(|&q| !withheld.get(q).copied().unwrap_or(true))
        .min_by_key(|&q| {
            let v = values.get(q).copied().unwrap_or(0);
            (v == 0, v, layout.is_margin(q), q)
        })
}

/// One more quantity to withhold for exposed quantity `q`: the cheapest published quantity
/// sharing a line with it, else the cheapest published quantity of the table.
fn complement_for(layout: &Layout, values: &[i64], withheld: &[bool], q: usize) -> Option<usize> {
    let neighbours: Vec<usize> = layout
        .lines
        .iter()
        .filter(|l| l.members.contains(&q))
        .flat_map(|l| l.members.iter().copied())
        .collect();
    cheapest(layout, values, withheld, neighbours.into_iter())
        .or_else(|| cheapest(layout, values, withheld, 0..layout.quantities.len()))
}

/// The range of quantity `q` given the quantities marked `published` (their values from
/// `cells`), or `None` if the solver failed (the caller treats that as exposed).
pub fn range(layout: &Layout, cells: &[i64], published: &[bool], q: usize) -> Option<Range> {
    let min = bound(layout, cells, published, q, OptimizationDirection::Minimize)?;
    let max = bound(layout, cells, published, q, OptimizationDirection::Maximize)?;
    let min = min?;
    Some(Range { min, max })
}

/// The optimum of quantity `q` in `direction`: `Some(None)` when unbounded, `None` when the
/// solver failed.
fn bound(
    layout: &Layout,
    cells: &[i64],
    published: &[bool],
    q: usize,
    direction: OptimizationDirection,
) -> Option<Option<i64>> {
    let target = layout.quantities.get(q)?;
    let mut p = Problem::new(direction);
    let vars: Vec<microlp::Variable> = (0..cells.len())
        .map(|i| {
            let coeff = if target.cells.contains(&i) { 1.0 } else { 0.0 };
            let cell_published = published.get(i).copied().unwrap_or(false);
            let v = cells.get(i).copied().unwrap_or(0) as f64;
            if cell_published {
                p.add_var(coeff, (v, v))
            } else {
                p.add_var(coeff, (0.0, f64::INFINITY))
            }
        })
        .collect();
    for (idx, quantity) in layout.quantities.iter().enumerate() {
        let is_cell = matches!(quantity.position, Position::Cell(..));
        if is_cell || !published.get(idx).copied().unwrap_or(false) {
            continue;
        }
        let terms: Vec<(microlp::Variable, f64)> = quantity
            .cells
            .iter()
            .filter_map(|&c| vars.get(c).map(|v| (*v, 1.0)))
            .collect();
        let rhs = layout.value(cells, idx) as f64;
        p.add_constraint(terms.as_slice(), ComparisonOp::Eq, rhs);
    }
    match p.solve() {
        Ok(outcome) => {
            let solution = outcome.into_solution().ok()?;
            let v = solution.objective().round();
            // Counts stay far below 2^53, so the rounded optimum is exact.
            Some(Some(v as i64))
        }
        Err(microlp::Error::Unbounded) => {
            if direction == OptimizationDirection::Maximize {
                Some(None)
            } else {
                None
            }
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn table(rows: &[&[i64]]) -> (Layout, Vec<i64>) {
        let layout = Layout::new(rows.len(), rows.first().map_or(0, |r| r.len()));
        (
            layout,
            rows.iter().flat_map(|r| r.iter().copied()).collect(),
        )
    }

    fn pos(layout: &Layout, p: Position) -> usize {
        layout.index(p).unwrap()
    }

    /// A witness that quantity `q` is not determined by the published quantities: a table
    /// that satisfies every published cell, margin and total exactly, has no negative count,
    /// and gives `q` another value than the true one. Found by depth-first search over the
    /// withheld cells (nearest values first), so the certificate is exact and independent of
    /// the linear program; `None` if none exists within the search budget.
    fn witness(layout: &Layout, cells: &[i64], published: &[bool], q: usize) -> Option<Vec<i64>> {
        let quantities = layout.quantities();
        let constraints: Vec<(Vec<usize>, i64)> = quantities
            .iter()
            .enumerate()
            .filter(|(i, _)| published[*i])
            .map(|(i, qq)| (qq.cells.clone(), layout.value(cells, i)))
            .collect();
        let target = &quantities[q].cells;
        let mut free: Vec<usize> = (0..cells.len())
            .filter(|i| !constraints.iter().any(|(cs, _)| cs == &vec![*i]))
            .collect();
        // The target's cells first, so that the search moves them first.
        free.sort_by_key(|i| !target.contains(i));
        let cap = |i: usize| -> i64 {
            constraints
                .iter()
                .filter(|(cs, _)| cs.contains(&i))
                .map(|(_, v)| *v)
                .min()
                .unwrap_or(cells[i] + 3)
        };
        let caps: Vec<i64> = free.iter().map(|&i| cap(i)).collect();
        let mut x: Vec<i64> = cells.to_vec();
        let mut budget: u64 = 2_000_000;
        fn ok_partial(x: &[i64], assigned: &[bool], constraints: &[(Vec<usize>, i64)]) -> bool {
            constraints.iter().all(|(cs, v)| {
                let sum: i64 = cs.iter().filter(|c| assigned[**c]).map(|c| x[*c]).sum();
                let open = cs.iter().any(|c| !assigned[*c]);
                sum <= *v && (open || sum == *v)
            })
        }
        #[allow(clippy::too_many_arguments)]
        fn rec(
            k: usize,
            free: &[usize],
            caps: &[i64],
            x: &mut Vec<i64>,
            assigned: &mut Vec<bool>,
            constraints: &[(Vec<usize>, i64)],
            truth: &[i64],
            target: &[usize],
            budget: &mut u64,
        ) -> bool {
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            if !ok_partial(x, assigned, constraints) {
                return false;
            }
            if k == free.len() {
                let now: i64 = target.iter().map(|c| x[*c]).sum();
                let was: i64 = target.iter().map(|c| truth[*c]).sum();
                return now != was;
            }
            let i = free[k];
            let t = truth[i];
            let mut order: Vec<i64> = (0..=caps[k]).collect();
            order.sort_by_key(|v| ((v - t).abs(), *v));
            for v in order {
                x[i] = v;
                assigned[i] = true;
                if rec(
                    k + 1,
                    free,
                    caps,
                    x,
                    assigned,
                    constraints,
                    truth,
                    target,
                    budget,
                ) {
                    return true;
                }
            }
            assigned[i] = false;
            x[i] = t;
            false
        }
        let mut assigned: Vec<bool> = (0..cells.len()).map(|i| !free.contains(&i)).collect();
        rec(
            0,
            &free,
            &caps,
            &mut x,
            &mut assigned,
            &constraints,
            cells,
            target,
            &mut budget,
        )
        .then_some(x)
    }

    fn assert_no_small_value_recoverable(layout: &Layout, cells: &[i64], p: &Protection) {
        let published: Vec<bool> = (0..layout.quantities().len())
            .map(|q| p.published(q))
            .collect();
        for q in 0..layout.quantities().len() {
            let v = layout.value(cells, q);
            if !is_small(v) {
                continue;
            }
            assert!(!published[q], "{q} published small");
            let w = witness(layout, cells, &published, q);
            assert!(
                w.is_some(),
                "small quantity {:?} = {v} is recoverable (cells {cells:?}, published {published:?})",
                layout.quantities()[q].position
            );
            // The witness holds every published quantity exactly and differs at q.
            let w = w.unwrap();
            assert!(w.iter().all(|c| *c >= 0));
            for (i, ok) in published.iter().enumerate() {
                if *ok {
                    assert_eq!(layout.value(&w, i), layout.value(cells, i));
                }
            }
            assert_ne!(layout.value(&w, q), v);
        }
    }

    #[test]
    fn a_small_cell_derivable_from_its_row_total_is_protected() {
        // 4 is small; publishing 40, 30 and the row total 74 would give it away.
        let (layout, cells) = table(&[&[4, 40, 30], &[20, 25, 33]]);
        let p = protect(&layout, &cells);
        assert!(!p.published(pos(&layout, Position::Cell(0, 0))));
        assert!(p.complementary_count() >= 3, "{p:?}");
        assert_no_small_value_recoverable(&layout, &cells, &p);
    }

    #[test]
    fn a_small_cell_derivable_from_two_margins_is_protected() {
        // Withholding the 3 and its row partner alone leaves the column equations: the 3 is
        // recoverable from its column total unless a cell of another row is withheld too.
        let (layout, cells) = table(&[&[3, 50, 60], &[40, 45, 70], &[35, 80, 90]]);
        let p = protect(&layout, &cells);
        let small = pos(&layout, Position::Cell(0, 0));
        assert!(!p.published(small));
        // Both its row and its column hold another withheld member.
        let row_partner = (1..3).any(|c| !p.published(pos(&layout, Position::Cell(0, c))));
        let col_partner = (1..3).any(|r| !p.published(pos(&layout, Position::Cell(r, 0))));
        assert!(row_partner && col_partner, "{p:?}");
        assert_no_small_value_recoverable(&layout, &cells, &p);
    }

    #[test]
    fn a_small_margin_is_withheld_with_what_would_give_it_away() {
        // Row 0 adds up to 9: the total is small, and so are its cells.
        let (layout, cells) = table(&[&[5, 4, 0], &[30, 40, 50], &[20, 25, 60]]);
        let p = protect(&layout, &cells);
        assert!(!p.published(pos(&layout, Position::RowTotal(0))));
        assert!(!p.published(pos(&layout, Position::Cell(0, 0))));
        assert!(!p.published(pos(&layout, Position::Cell(0, 1))));
        // Zero may show.
        assert!(p.published(pos(&layout, Position::Cell(0, 2))));
        assert_no_small_value_recoverable(&layout, &cells, &p);
    }

    #[test]
    fn a_one_way_table_hides_a_small_cell_from_its_total() {
        let (layout, cells) = table(&[&[7], &[120], &[45]]);
        let p = protect(&layout, &cells);
        assert!(!p.published(pos(&layout, Position::Cell(0, 0))));
        assert!(!p.published(pos(&layout, Position::Cell(2, 0))), "{p:?}");
        assert!(p.published(pos(&layout, Position::Cell(1, 0))));
        assert!(p.published(pos(&layout, Position::Total)));
        assert_no_small_value_recoverable(&layout, &cells, &p);
    }

    #[test]
    fn the_checker_catches_a_recoverable_cell() {
        // Only the 4 withheld: its row total gives it away, and the checker must say so.
        let (layout, cells) = table(&[&[4, 40], &[20, 25]]);
        let mut published = vec![true; layout.quantities().len()];
        let q = pos(&layout, Position::Cell(0, 0));
        published[q] = false;
        assert!(witness(&layout, &cells, &published, q).is_none());
        published[pos(&layout, Position::Cell(0, 1))] = false;
        // Now the column still gives it away.
        assert!(witness(&layout, &cells, &published, q).is_none());
        published[pos(&layout, Position::Cell(1, 0))] = false;
        published[pos(&layout, Position::Cell(1, 1))] = false;
        assert!(witness(&layout, &cells, &published, q).is_some());
    }

    #[test]
    fn nothing_is_withheld_without_small_values() {
        let (layout, cells) = table(&[&[0, 40, 30], &[20, 0, 33]]);
        let p = protect(&layout, &cells);
        assert!(p.withheld.iter().all(|w| !w), "{p:?}");
    }

    #[test]
    fn a_table_of_small_values_is_withheld_whole() {
        let (layout, cells) = table(&[&[1, 2], &[3, 4]]);
        let p = protect(&layout, &cells);
        assert!(p.withheld.iter().all(|w| *w), "{p:?}");
    }

    #[test]
    fn ranges_follow_the_published_equations() {
        let (layout, cells) = table(&[&[4, 40], &[20, 25]]);
        // Everything but the 4 published: it is exactly recoverable.
        let mut published = vec![true; layout.quantities().len()];
        let q = pos(&layout, Position::Cell(0, 0));
        published[q] = false;
        assert!(range(&layout, &cells, &published, q).unwrap().exact());
        // Withhold the 4, the 40, the 20 and the 25: the margins pin a cycle of four cells;
        // the 4 can move between 0 and 24.
        for p in [
            Position::Cell(0, 1),
            Position::Cell(1, 0),
            Position::Cell(1, 1),
        ] {
            published[pos(&layout, p)] = false;
        }
        let r = range(&layout, &cells, &published, q).unwrap();
        assert_eq!((r.min, r.max), (0, Some(24)));
    }

    /// The property: over random tables, no published count is from 1 to 10, and no value
    /// from 1 to 10 is determined by the published cells, margins and totals (checked by exact
    /// enumeration, independent of the linear program).
    #[test]
    fn no_small_value_is_recoverable_from_random_tables() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0c35_5eed);
        for _ in 0..300 {
            let nrows = rng.random_range(1..=3);
            let ncols = rng.random_range(1..=3);
            let cells: Vec<i64> = (0..nrows * ncols)
                .map(|_| match rng.random_range(0..10) {
                    0..=2 => 0,
                    3..=6 => rng.random_range(1..=10),
                    _ => rng.random_range(11..=16),
                })
                .collect();
            let layout = Layout::new(nrows, ncols);
            let p = protect(&layout, &cells);
            assert_no_small_value_recoverable(&layout, &cells, &p);
        }
    }
}
