//! Property tests of `infer` against every timing of reads: each tool's deploy is a list
//! of file operations; a read takes its parts (logs and locks, `current`, the listing;
//! Kudu's `active` and its `status.xml` files; git's refs and its work tree) each at its
//! own moment, in the reader's order, anywhere between the operations. Whatever the
//! moments, the transitions must be exact: every deploy reported once per status, in
//! order, ending in `success`, and nothing else reported.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::infer;
use super::model::{Params, SiteState, Transition};
use crate::model::{CommitInfo, Status, Timestamp};
use crate::snapshot::git::GitSite;
use crate::snapshot::kudu::{KuduEntry, KuduSnapshot, KuduStatus};
use crate::snapshot::{
    Current, DeployerFiles, Flavour, LayoutSnapshot, LogEntry, Release, ReleasesLogEntry,
    ReleasesSnapshot, Revision, RevisionsLog, Snapshot,
};

const T0: i64 = 1_800_000_000;
/// Each file operation takes this long.
const STEP_MS: i64 = 100;

fn at_ms(ms: i64) -> Timestamp {
    Timestamp(T0 * 1_000_000 + ms * 1000)
}

fn params() -> Params {
    Params {
        settle: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(600),
        ..Params::default()
    }
}

fn sha(name: &str) -> String {
    format!("{name:0>40}")
}

fn commit(name: &str) -> CommitInfo {
    CommitInfo {
        author: "Jane Doe".into(),
        email: "jane@example.com".into(),
        message: format!("commit of {name}"),
        time: at_ms(-100_000),
    }
}

// ---- releases ---------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct RelFs {
    /// name -> (REVISION written, DEPLOY_UNFINISHED present, modified at ms)
    releases: BTreeMap<String, (bool, bool, i64)>,
    current: Option<String>,
    log: Vec<LogEntry>,
    lock: Option<String>,
    release_link: Option<String>,
    releases_log: Vec<ReleasesLogEntry>,
}

#[derive(Clone, Debug)]
enum Op {
    Create(&'static str),
    Revision(&'static str),
    Unfinished(&'static str),
    Finished(&'static str),
    Switch(&'static str),
    Log(&'static str),
    Remove(&'static str),
    Lock,
    Unlock,
    ReleaseLink(Option<&'static str>),
    ReleasesLog(&'static str),
}

impl RelFs {
    fn apply(&mut self, op: &Op, ms: i64) {
        match op {
            Op::Create(n) => {
                self.releases.insert(n.to_string(), (false, false, ms));
            }
            Op::Revision(n) => {
                if let Some(r) = self.releases.get_mut(*n) {
                    r.0 = true;
                    r.2 = ms;
                }
            }
            Op::Unfinished(n) => {
                if let Some(r) = self.releases.get_mut(*n) {
                    r.1 = true;
                    r.2 = ms;
                }
            }
            Op::Finished(n) => {
                if let Some(r) = self.releases.get_mut(*n) {
                    r.1 = false;
                    r.2 = ms;
                }
            }
            Op::Switch(n) => self.current = Some(n.to_string()),
            Op::Log(n) => self.log.push(LogEntry::Deployed {
                branch: "main".into(),
                sha: sha(n),
                release: n.to_string(),
                user: "alice".into(),
            }),
            Op::Remove(n) => {
                self.releases.remove(*n);
            }
            Op::Lock => self.lock = Some("alice".into()),
            Op::Unlock => self.lock = None,
            Op::ReleaseLink(n) => self.release_link = n.map(str::to_string),
            Op::ReleasesLog(n) => self.releases_log.push(ReleasesLogEntry {
                release_name: n.to_string(),
                created_at: Some(at_ms(0)),
                user: Some("alice".into()),
                target: Some("main".into()),
            }),
        }
    }

    /// A snapshot whose parts were read from three states: logs and locks from `logs`,
    /// `current` from `cur`, the listing from `list`.
    fn torn(flavour: Flavour, logs: &RelFs, cur: &RelFs, list: &RelFs) -> ReleasesSnapshot {
        let mut s = ReleasesSnapshot::empty(flavour);
        if flavour == Flavour::Capistrano {
            s.revisions_log = Some(RevisionsLog {
                first: 0,
                entries: logs.log.clone(),
                partial_tail: false,
            });
        }
        if flavour == Flavour::Deployer {
            s.deployer = Some(DeployerFiles {
                lock: logs.lock.clone(),
                release_link: logs.release_link.clone(),
                releases_log: logs.releases_log.clone(),
            });
        }
        s.current = match &cur.current {
            None => Current::Absent,
            Some(n) if cur.releases.contains_key(n) => Current::Release(n.clone()),
            Some(n) => Current::Dangling(n.clone()),
        };
        for (name, (revision, unfinished, modified)) in &list.releases {
            s.releases.insert(
                name.clone(),
                Release {
                    name: name.clone(),
                    revision: if *revision {
                        Revision::Sha(sha(name))
                    } else {
                        Revision::Missing
                    },
                    unfinished: *unfinished,
                    bad: false,
                    modified: at_ms(*modified),
                    commit: revision.then(|| commit(name)),
                },
            );
        }
        s
    }
}

/// The states a deploy goes through: `[0]` before it (the baseline), then one per op.
fn states(start: &RelFs, ops: &[Op]) -> Vec<RelFs> {
    let mut out = vec![start.clone()];
    let mut fs = start.clone();
    for (i, op) in ops.iter().enumerate() {
        fs.apply(op, (i as i64 + 1) * STEP_MS);
        out.push(fs.clone());
    }
    out
}

/// Where each read takes its parts: `[first, second, third]` state indices, in the
/// reader's order; consecutive reads never go back in time.
fn schedule(n: usize, steps: &[(usize, usize, usize)]) -> Vec<[usize; 3]> {
    let mut reads = Vec::new();
    let mut c = 0usize;
    for (a, b, d) in steps {
        let first = (c + a).min(n);
        let second = (first + b).min(n);
        let third = (second + d).min(n);
        reads.push([first, second, third]);
        c = third;
    }
    reads
}

/// Feeds reads through `infer` (each at the time of its last part, a little later) and
/// then clean reads of the end state until everything has settled; returns every
/// transition.
fn run_reads(
    snap_at: &dyn Fn([usize; 3]) -> LayoutSnapshot,
    n: usize,
    reads: &[[usize; 3]],
) -> Vec<Transition> {
    let p = params();
    let mut st = SiteState::default();
    let mut all = Vec::new();
    let mut feed = |parts: [usize; 3], now: Timestamp, st: &mut SiteState| {
        let snap = Snapshot {
            taken_at: now,
            layout: snap_at(parts),
            health: None,
        };
        let inf = infer(st, &snap, now, &p);
        all.extend(inf.transitions);
        *st = inf.state;
    };
    feed([0, 0, 0], at_ms(-1000), &mut st);
    for parts in reads {
        feed(
            *parts,
            at_ms(parts[2] as i64 * STEP_MS + STEP_MS / 2),
            &mut st,
        );
    }
    let end = n as i64 * STEP_MS;
    for later in [STEP_MS / 2, 2_500, 5_000, 10_000] {
        feed([n, n, n], at_ms(end + later), &mut st);
    }
    all
}

/// Each expected deployment (by payload id) is reported in increasing statuses, once
/// each, ending in `success`, every transition with the same id; nothing else is
/// reported.
fn assert_exact(all: &[Transition], expected_ids: &[String]) -> Result<(), TestCaseError> {
    let mut by_serial: BTreeMap<u64, Vec<&Transition>> = BTreeMap::new();
    for t in all {
        by_serial.entry(t.deployment.serial).or_default().push(t);
    }
    let ids: BTreeSet<String> = by_serial
        .values()
        .filter_map(|ts| ts.last().map(|t| t.deployment.id.clone()))
        .collect();
    let want: BTreeSet<String> = expected_ids.iter().cloned().collect();
    let summary = || {
        all.iter()
            .map(|t| format!("#{} {} {}", t.deployment.serial, t.deployment.id, t.to))
            .collect::<Vec<_>>()
    };
    prop_assert_eq!(&ids, &want, "deployments: {:?}", summary());
    prop_assert_eq!(
        by_serial.len(),
        expected_ids.len(),
        "one deployment per deploy, never two: {:?}",
        summary()
    );
    for ts in by_serial.values() {
        let ids: BTreeSet<&str> = ts.iter().map(|t| t.deployment.id.as_str()).collect();
        prop_assert_eq!(
            ids.len(),
            1,
            "one deployment, one id, from its first transition to its last: {:?}",
            summary()
        );
        let statuses: Vec<Status> = ts.iter().map(|t| t.to).collect();
        prop_assert!(
            statuses.windows(2).all(|w| w[0] < w[1]),
            "not increasing: {:?}",
            summary()
        );
        prop_assert_eq!(statuses.last(), Some(&Status::Success), "{:?}", summary());
    }
    Ok(())
}

fn releases_case(
    flavour: Flavour,
    start: RelFs,
    ops: &[Op],
    steps: &[(usize, usize, usize)],
    new: &[&str],
) -> Result<(), TestCaseError> {
    let st = states(&start, ops);
    let n = ops.len();
    let snap_at = |p: [usize; 3]| {
        LayoutSnapshot::Releases(Box::new(RelFs::torn(
            flavour, &st[p[0]], &st[p[1]], &st[p[2]],
        )))
    };
    let all = run_reads(&snap_at, n, &schedule(n, steps));
    assert_exact(&all, &new.iter().map(|r| sha(r)).collect::<Vec<_>>())
}

/// Release `1` live, an old release `0` that cleanup removes.
fn live_start(flavour: Flavour) -> RelFs {
    let mut fs = RelFs::default();
    fs.apply(&Op::Create("0"), -50_000);
    fs.apply(&Op::Revision("0"), -50_000);
    fs.apply(&Op::Create("1"), -40_000);
    fs.apply(&Op::Revision("1"), -40_000);
    fs.apply(&Op::Switch("1"), -40_000);
    if flavour == Flavour::Capistrano {
        fs.apply(&Op::Log("1"), -40_000);
    }
    fs
}

fn steps() -> impl Strategy<Value = Vec<(usize, usize, usize)>> {
    proptest::collection::vec((0..3usize, 0..3usize, 0..3usize), 1..14)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn capistrano_deploy_is_exact_for_every_timing_of_reads(steps in steps()) {
        use Op::*;
        let ops = [Create("2"), Revision("2"), Switch("2"), Remove("0"), Log("2")];
        releases_case(Flavour::Capistrano, live_start(Flavour::Capistrano), &ops, &steps, &["2"])?;
    }

    #[test]
    fn two_overlapping_capistrano_deploys_are_exact_for_every_timing_of_reads(steps in steps()) {
        use Op::*;
        let ops = [
            Create("2"), Revision("2"), Create("3"), Revision("3"),
            Switch("2"), Log("2"), Switch("3"), Remove("0"), Log("3"),
        ];
        releases_case(Flavour::Capistrano, live_start(Flavour::Capistrano), &ops, &steps, &["2", "3"])?;
    }

    #[test]
    fn deployer_deploy_is_exact_for_every_timing_of_reads(steps in steps()) {
        use Op::*;
        let ops = [
            Lock, Create("2"), ReleaseLink(Some("2")), ReleasesLog("2"), Revision("2"),
            Switch("2"), ReleaseLink(None), Remove("0"), Unlock,
        ];
        releases_case(Flavour::Deployer, live_start(Flavour::Deployer), &ops, &steps, &["2"])?;
    }

    #[test]
    fn deploy_helper_deploy_is_exact_for_every_timing_of_reads(steps in steps()) {
        use Op::*;
        let ops = [Create("2"), Unfinished("2"), Revision("2"), Switch("2"), Finished("2"), Remove("0")];
        releases_case(Flavour::Plain, live_start(Flavour::Plain), &ops, &steps, &["2"])?;
    }

    #[test]
    fn plain_deploy_is_exact_for_every_timing_of_reads(steps in steps()) {
        use Op::*;
        let ops = [Create("2"), Revision("2"), Switch("2")];
        releases_case(Flavour::Plain, live_start(Flavour::Plain), &ops, &steps, &["2"])?;
    }

    /// The hold-back rule on its own: even read in the worst order (the listing first,
    /// the log last), a log line naming a release not listed yet is credited later.
    #[test]
    fn capistrano_log_read_after_the_listing_is_still_exact(steps in steps()) {
        use Op::*;
        let ops = [Create("2"), Revision("2"), Switch("2"), Log("2")];
        let start = live_start(Flavour::Capistrano);
        let st = states(&start, &ops);
        let n = ops.len();
        let snap_at = |p: [usize; 3]| {
            // listing at the first moment, current at the second, the log at the third
            LayoutSnapshot::Releases(Box::new(RelFs::torn(
                Flavour::Capistrano, &st[p[2]], &st[p[1]], &st[p[0]],
            )))
        };
        let all = run_reads(&snap_at, n, &schedule(n, &steps));
        assert_exact(&all, &[sha("2")])?;
    }
}

// ---- Kudu -------------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct KuduFs {
    /// id -> (status, complete, modified at ms)
    deployments: BTreeMap<String, (Status, bool, i64)>,
    active: Option<String>,
}

fn kudu_torn(active: &KuduFs, list: &KuduFs) -> KuduSnapshot {
    let mut s = KuduSnapshot {
        active: active.active.clone(),
        ..KuduSnapshot::default()
    };
    for (id, (status, complete, modified)) in &list.deployments {
        s.deployments.insert(
            id.clone(),
            KuduEntry::Ready {
                status: Box::new(KuduStatus {
                    id: id.clone(),
                    status: Some(*status),
                    author: Some("Jane Doe".into()),
                    received_time: Some(at_ms(0)),
                    complete: *complete,
                    end_time: complete.then(|| at_ms(*modified)),
                    ..KuduStatus::default()
                }),
                modified: at_ms(*modified),
            },
        );
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn kudu_deploy_is_exact_for_every_timing_of_reads(steps in steps()) {
        let mut fs = KuduFs::default();
        fs.deployments.insert(sha("1"), (Status::Success, true, -40_000));
        fs.active = Some(sha("1"));
        let id = sha("2");
        let mut st = vec![fs.clone()];
        for (i, (status, complete)) in [
            (Status::Pending, false),
            (Status::Building, false),
            (Status::Deploying, false),
            (Status::Success, true),
        ]
        .into_iter()
        .enumerate()
        {
            fs.deployments.insert(id.clone(), (status, complete, (i as i64 + 1) * STEP_MS));
            st.push(fs.clone());
        }
        fs.active = Some(id.clone());
        st.push(fs.clone());
        let n = st.len() - 1;
        // `active` is read first, then the listing. The middle moment is not a part of
        // its own: an odd gap to it says the read caught `status.xml` half-rewritten
        // in place (as Kudu writes it), which reads as not ready.
        let snap_at = |p: [usize; 3]| {
            let mut k = kudu_torn(&st[p[0]], &st[p[2]]);
            if (p[1] + p[2]) % 2 == 1
                && let Some(e) = k.deployments.get_mut(&id)
            {
                *e = KuduEntry::NotReady {
                    reason: "half-written".into(),
                    modified: at_ms(p[2] as i64 * STEP_MS),
                };
            }
            LayoutSnapshot::Kudu(Box::new(k))
        };
        let all = run_reads(&snap_at, n, &schedule(n, &steps));
        assert_exact(&all, std::slice::from_ref(&id))?;
    }
}

// ---- git --------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// `git push` to a work tree with `updateInstead`: the files are updated, then the
    /// branch moves. A read resolves the refs first, then compares the work tree with
    /// the commit it resolved.
    #[test]
    fn git_push_to_deploy_is_exact_for_every_timing_of_reads(steps in steps()) {
        let (old, new) = (sha("1"), sha("2"));
        // (files are at new, branch is at new)
        let st = [(false, false), (true, false), (true, true)];
        let n = st.len() - 1;
        let snap_at = |p: [usize; 3]| {
            let branch = if st[p[0]].1 { new.clone() } else { old.clone() };
            let files = if st[p[2]].0 { new.clone() } else { old.clone() };
            LayoutSnapshot::Git(Box::new(GitSite {
                branch: Some("main".into()),
                branch_commit: Some(branch.clone()),
                head_commit: Some(branch.clone()),
                tree_matches: files == branch,
                commit: Some(commit(&branch)),
                error: None,
            }))
        };
        let all = run_reads(&snap_at, n, &schedule(n, &steps));
        assert_exact(&all, &[new])?;
    }
}
