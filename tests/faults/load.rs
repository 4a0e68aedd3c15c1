//! Concurrent load on a gateway: clinicians reading a crisis incident for treatment (permitted
//! disclosures), clinicians asking for it for an investigation (logged denials) and officers
//! writing new incidents. Every request is kept as a [`Sample`]: when it started and ended,
//! and what came back.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::gateway::{Dev, Gateway, User};

/// The record every read asks for.
pub const INCIDENT: &str = "/v1/records/crisis-incident/INC-F-1";
/// A value of that record: it must never appear in a refusal.
pub const NARRATIVE: &str = "Fault-test narrative: the caller reported a person on a ledge.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A clinician reads the incident for treatment: a disclosure (200).
    Read,
    /// A clinician asks for it for an investigation: a logged denial (403).
    Denied,
    /// An officer writes a new incident (201).
    Write,
}

#[derive(Debug)]
pub struct Sample {
    pub op: Op,
    pub started: Instant,
    pub ended: Instant,
    /// `None`: no answer (connection refused or reset).
    pub status: Option<u16>,
    pub request_id: Option<String>,
    pub disclosure_id: Option<u64>,
    /// The body of any answer other than 200 and 201.
    pub body: String,
}

impl Sample {
    pub fn latency(&self) -> Duration {
        self.ended - self.started
    }
}

/// Writes the incident every read asks for.
pub async fn seed(g: &Gateway, officer: &User) {
    let body = json!({
        "subjects": [{"system": "metro-pd", "value": "P-9001"}],
        "fields": {
            "incident_id": "INC-F-1",
            "occurred_at": "2026-11-20T10:00:00Z",
            "call_type": "SUICIDE_THREAT",
            "narrative": NARRATIVE,
            "safety_weapon": true,
        },
    });
    let res = officer
        .client
        .put(g.url(INCIDENT))
        .bearer_auth(&officer.token)
        .json(&body)
        .send()
        .await
        .expect("seed the incident");
    let status = res.status().as_u16();
    assert!(
        status == 201 || status == 200,
        "seed: {status} {}",
        res.text().await.unwrap_or_default()
    );
}

pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts `readers` readers, `deniers` denied readers and `writers` writers against `g`.
    pub fn start(
        g: &Gateway,
        clinician: &User,
        officer: &User,
        (readers, deniers, writers): (usize, usize, usize),
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let base = g.url("");
        let mut tasks = Vec::new();
        let ops = std::iter::repeat_n(Op::Read, readers)
            .chain(std::iter::repeat_n(Op::Denied, deniers))
            .chain(std::iter::repeat_n(Op::Write, writers));
        for op in ops {
            let user = match op {
                Op::Read | Op::Denied => clinician.clone(),
                Op::Write => officer.clone(),
            };
            tasks.push(tokio::spawn(worker(
                op,
                user,
                base.clone(),
                stop.clone(),
                acked.clone(),
            )));
        }
        Self { stop, acked, tasks }
    }

    /// Answers received so far that the gateway acknowledged (200, 201 or a logged 403).
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until `n` more answers have been acknowledged.
    pub async fn wait_for_acks(&self, n: u64, within: Duration) -> bool {
        let target = self.acked() + n;
        let deadline = Instant::now() + within;
        while self.acked() < target {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops the workers and returns every sample.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("load worker"));
        }
        all.sort_by_key(|s| s.started);
        all
    }
}

async fn worker(
    op: Op,
    user: User,
    base: String,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let req = match op {
            Op::Read | Op::Denied => user
                .client
                .get(format!("{base}{INCIDENT}"))
                .bearer_auth(&user.token)
                .header(
                    "Purpose-Of-Use",
                    if op == Op::Read {
                        "treatment"
                    } else {
                        "investigation"
                    },
                ),
            Op::Write => {
                let id = format!("INC-W-{}", uuid::Uuid::new_v4().simple());
                user.client
                    .put(format!("{base}/v1/records/crisis-incident/{id}"))
                    .bearer_auth(&user.token)
                    .json(&json!({
                        "subjects": [{"system": "metro-pd", "value": "P-9002"}],
                        "fields": {
                            "incident_id": id,
                            "occurred_at": "2026-11-21T08:30:00Z",
                            "call_type": "WELFARE_CHECK",
                        },
                    }))
            }
        };
        let mut sample = Sample {
            op,
            started,
            ended: started,
            status: None,
            request_id: None,
            disclosure_id: None,
            body: String::new(),
        };
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let header = |name: &str| {
                    res.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                sample.request_id = header("request-id");
                sample.disclosure_id = header("disclosure-id").and_then(|v| v.parse().ok());
                // Only an answer read in full counts as received.
                match res.bytes().await {
                    Ok(body) => {
                        sample.status = Some(status);
                        if status != 200 && status != 201 {
                            sample.body = String::from_utf8_lossy(&body).into_owned();
                        }
                        let ok = match (op, status) {
                            (Op::Read, 200) => {
                                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                                assert_eq!(
                                    v["disclosure_id"].as_u64(),
                                    sample.disclosure_id,
                                    "body and header name one entry"
                                );
                                true
                            }
                            (Op::Denied, 403) | (Op::Write, 201) => true,
                            _ => false,
                        };
                        if ok {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => sample.status = None,
                }
            }
            Err(_) => {
                // The gateway is gone or not there yet: do not spin.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        sample.ended = Instant::now();
        samples.push(sample);
    }
    samples
}

/// What the answers acknowledged: each 200 read's entry is a permitted disclosure with the
/// answer's request id, each 403 a denial, each 201 write a `record_changed` entry.
pub fn acknowledged(samples: &[Sample]) -> impl Iterator<Item = &Sample> {
    samples.iter().filter(|s| {
        matches!(
            (s.op, s.status),
            (Op::Read, Some(200)) | (Op::Denied, Some(403)) | (Op::Write, Some(201))
        )
    })
}

/// Asserts that the log holds an entry for every acknowledged answer: at the sequence number
/// the answer named, with the answer's request id, kind and outcome (a lost entry whose number
/// was reused by a later one is caught by the request id). Returns how many were checked.
pub async fn assert_all_in_log(dev: &Dev, samples: &[Sample]) -> usize {
    let rows = dev.log_rows().await;
    let by_seq: BTreeMap<i64, (Option<String>, String, String)> = rows
        .iter()
        .map(|(seq, rid, kind, outcome)| (*seq, (rid.clone(), kind.clone(), outcome.clone())))
        .collect();
    let writes: HashSet<&str> = rows
        .iter()
        .filter(|(_, _, kind, outcome)| kind == "record_changed" && outcome == "permit")
        .filter_map(|(_, rid, _, _)| rid.as_deref())
        .collect();
    let mut checked = 0;
    for s in acknowledged(samples) {
        let rid = s
            .request_id
            .as_deref()
            .expect("every answer has a Request-Id");
        match s.op {
            Op::Read | Op::Denied => {
                let seq = s.disclosure_id.expect("a Disclosure-Id");
                let seq = i64::try_from(seq).unwrap();
                let want = if s.op == Op::Read { "permit" } else { "deny" };
                match by_seq.get(&seq) {
                    Some((Some(r), kind, outcome)) => assert!(
                        r == rid && kind == "disclosure" && outcome == want,
                        "acknowledged disclosure {seq} (request {rid}, {want}) is not in the \
                         log: entry {seq} is request {r}, {kind}, {outcome}"
                    ),
                    other => panic!(
                        "acknowledged disclosure {seq} (request {rid}) is not in the log: {other:?}"
                    ),
                }
            }
            Op::Write => assert!(
                writes.contains(rid),
                "acknowledged write (request {rid}) has no record_changed entry"
            ),
        }
        checked += 1;
    }
    checked
}
