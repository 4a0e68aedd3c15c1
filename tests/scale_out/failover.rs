//! A database failover under load (README, "Database failover"): the gateway reaches
//! PostgreSQL through one address (here a TCP forwarder standing in for the virtual IP or
//! proxy of a real deployment). The primary streams to a synchronous standby
//! (`synchronous_commit = on`, `synchronous_standby_names` naming it). The primary crashes in
//! the middle of the load; the standby is promoted and the address moved to it.
//!
//! While the database is away every request is answered 503 (nothing disclosed, nothing
//! changed); no answer is ever sent without its durable log entry, so every disclosure and
//! every write acknowledged before, during or after the failover is in the promoted standby's
//! log, and the chain verifies. Then the gateway serves again without a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::AbortHandle;

use crate::support::{self, Dev, Gateway, Outcome, PgCluster, base, count, serial};

/// A TCP forwarder to the current primary: `move_to(None)` cuts every connection and answers
/// new ones by closing them (the database is away); `move_to(Some(port))` forwards to the new
/// primary.
struct Address {
    port: u16,
    target: Arc<Mutex<Option<u16>>>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Address {
    async fn start(to: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(Mutex::new(Some(to)));
        let open: Arc<Mutex<Vec<AbortHandle>>> = Arc::new(Mutex::new(Vec::new()));
        let (t, o) = (target.clone(), open.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let Some(to) = *t.lock().await else {
                    drop(inbound);
                    continue;
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                o.lock().await.push(task.abort_handle());
            }
        })
        .abort_handle();
        Self {
            port,
            target,
            open,
            accept,
        }
    }

    async fn move_to(&self, to: Option<u16>) {
        *self.target.lock().await = to;
        for t in self.open.lock().await.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Address {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_synchronous_standby_loses_no_acknowledged_answer() {
    let _serial = serial().await;
    let mut primary = PgCluster::start(&["wal_level=replica", "max_wal_senders=4"]);
    primary.create_db("gateway");
    let standby = PgCluster::standby_of(&primary, "standby1", &["hot_standby=on"]);
    // From now on a commit returns only once the standby has it on disk.
    primary.psql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'standby1'",
    );
    primary.psql("postgres", "SELECT pg_reload_conf()");
    let deadline = Instant::now() + Duration::from_secs(30);
    while primary.psql(
        "postgres",
        "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'",
    ) != "sync"
    {
        assert!(
            Instant::now() < deadline,
            "the standby never became synchronous"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(primary.psql("postgres", "SHOW synchronous_commit"), "on");

    let address = Address::start(primary.port).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/gateway", address.port);
    let dev = Dev::new();
    let prober = dev.who("oversight", "aud-1", &["compliance"]);
    let mut gw = Gateway::spawn(&dev, "gw", &url, &[]);
    gw.wait_ready(&prober).await;
    let officer = dev.who("metro-pd", "officer-17", &["officer"]);
    let clinician = dev.who("county-mh", "clin-7", &["clinician"]);
    let mut seeded = Vec::new();
    for i in 0..4 {
        let id = format!("INC-F{i}");
        let a = officer
            .put(
                &gw.url(&format!("/v1/records/crisis-incident/{id}")),
                &support::incident(&format!("P-F{i}"), "NARRATIVE-MARKER"),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 201, "{:?}", a.body);
        seeded.push(id);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(support::run_load(
        base(gw.port),
        officer.clone(),
        clinician.clone(),
        seeded,
        2,
        4,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The primary crashes; for a moment there is no database at the address.
    let crashed_at = Instant::now();
    primary.crash();
    address.move_to(None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The standby is promoted and the address moves to it.
    standby.promote();
    address.move_to(Some(standby.port)).await;
    let moved_at = Instant::now();

    // The gateway serves again without a restart (bounded wait), then a little more load.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = clinician
            .get(
                &gw.url("/v1/records/crisis-incident/INC-F0"),
                Some("treatment"),
            )
            .await
            .unwrap();
        if a.status == 200 {
            break;
        }
        assert_eq!(a.status, 503, "{:?}", a.body);
        assert!(
            Instant::now() < deadline,
            "the gateway did not recover after the failover:\n{}",
            gw.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered_after = moved_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();

    // Every answer was a success or a 503 that disclosed nothing; the gateway never went away.
    for t in &outcomes {
        match &t.outcome {
            Outcome::Refused { status, body } => {
                assert_eq!(*status, 503, "{body}");
                assert_eq!(body["code"], "service_unavailable", "{body}");
            }
            Outcome::Failed { error } => panic!("no HTTP answer: {error}"),
            _ => {}
        }
    }
    let unavailable = count(&outcomes, |o| matches!(o, Outcome::Refused { .. }));
    let served_after = outcomes
        .iter()
        .filter(|t| t.started > moved_at && !matches!(t.outcome, Outcome::Refused { .. }))
        .count();
    let served_before = outcomes
        .iter()
        .filter(|t| t.ended < crashed_at && !matches!(t.outcome, Outcome::Refused { .. }))
        .count();
    assert!(unavailable > 0, "the outage was never seen");
    assert!(
        served_before > 0 && served_after > 0,
        "{served_before} / {served_after}"
    );
    eprintln!(
        "failover: {served_before} answers before the crash, {unavailable} answered 503, \
         {served_after} after the move; serving again {recovered_after:?} after it"
    );

    // Everything acknowledged is in the promoted standby's log, and the chain verifies.
    let promoted = standby.url("gateway");
    support::assert_acknowledged_in_log(&promoted, &outcomes).await;
    let (code, out, err) = support::audit_verify(&dev, &promoted, None);
    assert_eq!(code, 0, "audit verify on the promoted standby: {out}{err}");
    assert!(
        out.contains("\nok: Merkle tree of "),
        "the promoted standby's tree verifies: {out}"
    );
    let health = prober.get(&gw.url("/healthz"), None).await.unwrap();
    assert_eq!(health.status, 200, "{:?}", health.body);
    gw.kill();
}
