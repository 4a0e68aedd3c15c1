//! A database that goes back to an earlier state under running gateways: a failover to a
//! standby that lacks the primary's last commits, or a restore from a backup. A consent granted
//! in the lost commits must not live on in a gateway's consent cache: the very next read is
//! decided on what the database holds, and so is every read after the next consent change
//! (whose epoch, were epochs counters, would be the lost one's again).

use crate::support::replicas::{
    PLAN_SUBJECT, grant_plan_consent, officer_reads_plan, two_gateways_with_a_plan,
};
use crate::support::{Db, exec, scalar};

const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

#[tokio::test]
async fn a_consent_lost_by_a_rollback_is_never_used_from_a_replica_cache() {
    for db in BOTH {
        let (a, b) = two_gateways_with_a_plan(db).await;

        // The state a standby (or last night's backup) holds.
        let before = scalar(a.store(), "SELECT consents FROM cache_epochs").await;

        // A consent is granted; B decides on it and caches it.
        grant_plan_consent(&a, PLAN_SUBJECT).await;
        assert_eq!(officer_reads_plan(&b).await, 200);

        // The database goes back to the earlier state: the grant is lost.
        exec(
            a.store(),
            &format!(
                "DELETE FROM consent_events; DELETE FROM consent_subjects; DELETE FROM consents; \
                 UPDATE cache_epochs SET consents = {before} WHERE id = 1"
            ),
        )
        .await;
        assert_eq!(
            officer_reads_plan(&b).await,
            403,
            "B must not decide on a consent the database no longer holds ({db:?})"
        );

        // The next consent change (another person's) moves the epoch again: B still decides
        // on what the database holds for this person.
        grant_plan_consent(&a, "MRN-99").await;
        assert_eq!(
            officer_reads_plan(&b).await,
            403,
            "a later epoch must never be the lost one's ({db:?})"
        );
        assert_eq!(officer_reads_plan(&a).await, 403);
        b.stop().await;
        a.stop().await;
    }
}
