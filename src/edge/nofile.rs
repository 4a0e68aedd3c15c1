//! The process's open-file limit, checked against the connection caps at start-up.
//!
//! Every connection is a file descriptor. With the common default soft limit of 1,024, a few
//! hundred open connections and the database's files are enough for `accept` to fail with
//! `Too many open files` for everyone. At start-up the gateway raises its soft limit to the
//! hard limit (an unprivileged process may), then warns when even that is below what the
//! configured caps may need: every registered partner at `server.max_connections_per_partner`,
//! plus the database connections, plus a reserve.

/// Descriptors kept for what is not a partner connection: the listener, handshakes still in
/// progress, standard streams, log files, the runtime's own.
pub const RESERVE: u64 = 64;

/// Descriptors the configured caps may need: `partners` partners each at `per_partner`
/// connections, and `db_connections` database connections (three files each, as a SQLite
/// connection holds the database, its WAL and its shared memory; the log writer and the
/// readiness probe add two), plus [`RESERVE`].
pub fn needed(partners: usize, per_partner: usize, db_connections: u32) -> u64 {
    let partners = u64::try_from(partners).unwrap_or(u64::MAX);
    let per_partner = u64::try_from(per_partner).unwrap_or(u64::MAX);
    partners
        .saturating_mul(per_partner)
        .saturating_add(
            u64::from(db_connections)
                .saturating_add(2)
                .saturating_mul(3),
        )
        .saturating_add(RESERVE)
}

/// The warning to give when the soft limit `soft` is below `needed`.
pub fn warning(soft: u64, needed: u64, partners: usize, per_partner: usize) -> Option<String> {
    (soft < needed).then(|| {
        format!(
            "the open-file limit is {soft}, below the {needed} descriptors the connection caps \
             may need ({partners} partner(s) x `server.max_connections_per_partner` = \
             {per_partner}, plus the database and a reserve of {RESERVE}): raise the hard limit \
             (`LimitNOFILE=` in the systemd unit, `ulimit -Hn`, or the container's `nofile` \
             limit) or lower `server.max_connections_per_partner`, or partners may be refused \
             with `Too many open files` before they reach their cap"
        )
    })
}

/// Raises the soft open-file limit to the hard limit and logs a warning when it is still below
/// what the caps may need. Returns the soft limit in force (`None` where there is none to read).
pub fn raise_and_check(partners: usize, per_partner: usize, db_connections: u32) -> Option<u64> {
    let soft = raise()?;
    let needed = needed(partners, per_partner, db_connections);
    match warning(soft, needed, partners, per_partner) {
        Some(w) => tracing::warn!(target: "startup", open_file_limit = soft, needed, "{w}"),
        None => {
            tracing::info!(target: "startup", open_file_limit = soft, needed, "open-file limit")
        }
    }
    Some(soft)
}

#[cfg(unix)]
fn raise() -> Option<u64> {
    let (soft, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(target: "startup", error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    if soft >= hard {
        return Some(soft);
    }
    match rlimit::increase_nofile_limit(hard) {
        Ok(now) => Some(now),
        Err(e) => {
            tracing::warn!(
                target: "startup",
                error = %e,
                soft,
                hard,
                "cannot raise the open-file limit to the hard limit"
            );
            Some(soft)
        }
    }
}

#[cfg(not(unix))]
fn raise() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_caps_need_counts_partners_the_database_and_a_reserve() {
        assert_eq!(needed(3, 256, 8), 3 * 256 + 10 * 3 + RESERVE);
        assert_eq!(needed(usize::MAX, usize::MAX, u32::MAX), u64::MAX);
    }

    #[test]
    fn a_limit_below_the_need_is_warned_about_with_what_to_do() {
        let need = needed(3, 256, 8);
        assert_eq!(warning(need, need, 3, 256), None);
        assert_eq!(warning(1_048_576, need, 3, 256), None);
        let w = warning(1024, needed(10, 256, 8), 10, 256).expect("a warning");
        assert!(w.contains("1024"), "{w}");
        assert!(w.contains("max_connections_per_partner"), "{w}");
        assert!(w.contains("LimitNOFILE"), "{w}");
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_limit() {
        let soft = raise_and_check(3, 1, 1).expect("a limit on unix");
        let (now, hard) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!(soft, now);
        // Raised as far as the kernel allows (an infinite hard limit may be capped).
        assert!(now == hard || now >= 1024, "{now} {hard}");
    }
}
