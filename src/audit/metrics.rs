//! What the log's append path measures for the metrics endpoint: append latency (from the
//! call to the durable receipt), entries per group commit, and disclosure entries by recipient
//! partner, purpose and outcome.
//!
//! Security role: labels are partner ids, purposes and outcomes only, never a subject, user,
//! record or field. Values that do not look like a partner id or purpose (lower-case letters,
//! digits and `-`, at most 64) are counted as `other`, so no caller can grow the label set.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

use super::entry::{EntryKind, NewEntry};

/// What a disclosure entry is counted under: recipient, purpose, outcome.
pub type DisclosureLabels = (Option<String>, Option<String>, &'static str);

/// The append path's instruments (unregistered; the metrics endpoint registers them).
#[derive(Debug, Clone)]
pub struct LogMetrics {
    /// Seconds from an append to its durable receipt.
    pub append_seconds: Option<Histogram>,
    /// Entries per group commit of the writer task.
    pub batch_entries: Option<Histogram>,
    /// Disclosure entries by `recipient`, `purpose` and `outcome`.
    pub disclosures: Option<IntCounterVec>,
}

impl Default for LogMetrics {
    fn default() -> Self {
        Self {
            append_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "gateway_log_append_seconds",
                    "time from a disclosure-log append to its durable commit",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )
            .ok(),
            batch_entries: Histogram::with_opts(
                HistogramOpts::new(
                    "gateway_log_batch_entries",
                    "entries committed together by one group commit of the log writer",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                ]),
            )
            .ok(),
            disclosures: IntCounterVec::new(
                Opts::new(
                    "gateway_disclosures_total",
                    "disclosure-log entries of kind `disclosure`, by recipient partner, purpose \
                     and outcome (`permit` or `deny`)",
                ),
                &["recipient", "purpose", "outcome"],
            )
            .ok(),
        }
    }
}

/// A label value: the value if it has the shape of a partner id or purpose, else `other`.
fn label(v: Option<&str>) -> &str {
    match v {
        Some(v)
            if !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            v
        }
        Some(_) => "other",
        None => "none",
    }
}

impl LogMetrics {
    /// The labels to count `e` under once it is durable, if it records a disclosure request.
    pub fn labels(e: &NewEntry) -> Option<DisclosureLabels> {
        (e.kind == EntryKind::Disclosure).then(|| {
            (
                e.recipient_partner.clone(),
                e.purpose.clone(),
                e.outcome.as_str(),
            )
        })
    }

    /// Counts a durable disclosure entry.
    pub fn count(&self, (recipient, purpose, outcome): &DisclosureLabels) {
        if let Some(c) = &self.disclosures {
            c.with_label_values(&[
                label(recipient.as_deref()),
                label(purpose.as_deref()),
                *outcome,
            ])
            .inc();
        }
    }

    /// Records one group commit of `n` entries.
    pub fn batch(&self, n: usize) {
        if let Some(h) = &self.batch_entries {
            h.observe(n as f64);
        }
    }

    /// Records one append's latency.
    pub fn appended(&self, secs: f64) {
        if let Some(h) = &self.append_seconds {
            h.observe(secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_bounded() {
        assert_eq!(label(Some("county-mh")), "county-mh");
        assert_eq!(label(Some("P-2231")), "other");
        assert_eq!(label(Some("a b")), "other");
        assert_eq!(label(Some(&"x".repeat(65))), "other");
        assert_eq!(label(None), "none");
    }
}
