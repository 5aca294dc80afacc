//! `infer` for the `releases` layout (SPEC §2.1): Capistrano, Deployer, Ansible
//! deploy_helper and plain releases.
//!
//! Each step: notice new deployments (a pending signal, a new release directory, `current`
//! moving to an existing release), then evaluate every tracked deployment's *level* — the
//! status the snapshot shows for it — and move it forward to that level. Levels never move
//! a deployment backwards; a snapshot that skips states does not invent them.

use std::cmp::Ordering;

use super::common;
use super::model::{Anomaly, Deployment, Inference, Live, Params, SiteState, Transition};
use crate::model::{CommitInfo, Status, Timestamp};
use crate::snapshot::{Current, Flavour, Health, LogEntry, Release, ReleasesSnapshot, Revision};

/// Orders release names: numerically when both are all digits (timestamps, Deployer's
/// counters), else as text.
pub fn release_order(a: &str, b: &str) -> Ordering {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if digits(a) && digits(b) {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

/// Gives a deployment whose release just appeared its commit when it is known (its id
/// final from now on); else holds its first transition until `settle` has passed.
fn attach_commit(
    d: &mut Deployment,
    known: Option<(String, Option<CommitInfo>)>,
    now: Timestamp,
    settle: std::time::Duration,
    release: &str,
) {
    if d.id_known {
        return;
    }
    match known {
        Some((sha, commit)) => {
            d.id = sha;
            d.commit = commit;
            d.id_known = true;
            d.hold_until = None;
        }
        None => {
            d.id = release.to_string();
            d.hold_until = Some(now.plus(settle));
        }
    }
}

/// Whether two commit ids name the same commit (one may be abbreviated).
fn same_commit(a: &str, b: &str) -> bool {
    !a.is_empty() && !b.is_empty() && (a.starts_with(b) || b.starts_with(a))
}

pub fn infer(
    prev: &SiteState,
    snap: &ReleasesSnapshot,
    health: Option<&Health>,
    now: Timestamp,
    p: &Params,
) -> Inference {
    let mut run = Run {
        st: prev.clone(),
        snap,
        health,
        now,
        p,
        transitions: Vec::new(),
        anomalies: Vec::new(),
        log: NewLogLines::default(),
    };
    run.note_current_anomalies();
    let current = snap.current_release().map(str::to_owned);
    if run.st.initialised {
        run.read_new_log_lines();
        run.notice_pending();
        run.notice_new_releases();
        run.notice_switch(current.as_deref());
    } else {
        run.baseline(current.as_deref());
    }
    run.evaluate(current.as_deref());

    // Remember what this snapshot showed.
    let lock_now = run.lock_now();
    let st = &mut run.st;
    st.known_releases = snap.releases.keys().cloned().collect();
    st.current = current;
    if let Some(log) = &snap.revisions_log {
        st.log_seen = run.log.consumed.unwrap_or(log.total());
        st.log_hold_since = run.log.hold_since;
    }
    st.repo_head = snap.repo_head.clone();
    st.lock_held = lock_now;
    let wake_at = run.wake_at();
    let wake_at = match run.log.recheck_at {
        Some(t) => Some(wake_at.map_or(t, |w| w.min(t))),
        None => wake_at,
    };
    Inference {
        state: run.st,
        transitions: run.transitions,
        anomalies: run.anomalies,
        wake_at,
    }
}

/// Capistrano `revisions.log` lines that are new since the last snapshot.
#[derive(Default)]
struct NewLogLines {
    /// release -> (branch, sha, user)
    deployed: Vec<(String, String, String, String)>,
    /// (release, user)
    rolled_back: Vec<(String, String)>,
    /// How many lines are consumed when some are held back (`None`: all of them).
    consumed: Option<usize>,
    /// Since when the first held-back line has been held.
    hold_since: Option<Timestamp>,
    /// When to read again to see whether a held-back line's release is listed now.
    recheck_at: Option<Timestamp>,
}

struct Run<'a> {
    st: SiteState,
    snap: &'a ReleasesSnapshot,
    health: Option<&'a Health>,
    now: Timestamp,
    p: &'a Params,
    transitions: Vec<Transition>,
    anomalies: Vec<Anomaly>,
    log: NewLogLines,
}

impl Run<'_> {
    fn lock_now(&self) -> bool {
        self.snap
            .deployer
            .as_ref()
            .is_some_and(|d| d.lock.is_some())
    }

    fn anomaly(&mut self, key: String, message: String) {
        self.anomalies.push(Anomaly { key, message });
    }

    fn note_current_anomalies(&mut self) {
        match &self.snap.current {
            Current::Dangling(name) => self.anomaly(
                format!("current-dangling:{name}"),
                format!("current points at releases/{name}, which does not exist"),
            ),
            Current::Outside(target) => self.anomaly(
                format!("current-outside:{target}"),
                format!("current points outside releases/ ({target}); it is not a release"),
            ),
            _ => {}
        }
    }

    /// Takes the `revisions.log` lines written since the last snapshot. A line naming a
    /// release this snapshot does not list (and never listed: a deleted one is fine) does
    /// not add up yet — the log was read after the listing, or the snapshot raced the
    /// deploy — so it and the lines after it stay unconsumed and are read again; only
    /// after `idle_timeout` is such a line given up, with an anomaly. Lines after it are
    /// already credited (crediting is idempotent), so a held line delays nothing.
    fn read_new_log_lines(&mut self) {
        let Some(log) = &self.snap.revisions_log else {
            return;
        };
        let start = if log.total() < self.st.log_seen {
            self.anomaly(
                "revisions.log-shrank".into(),
                "revisions.log is shorter than before (truncated or rotated); reading it from the start".into(),
            );
            0
        } else {
            self.st.log_seen
        };
        let mut held: Option<(usize, String)> = None;
        // The reader keeps a window of the newest lines: lines before it that were not
        // consumed yet (held back for more than the window) are past recovery.
        let entries = log
            .entries
            .iter()
            .enumerate()
            .map(|(k, e)| (log.first + k, e));
        for (i, entry) in entries.filter(|(i, _)| *i >= start) {
            let named = match entry {
                LogEntry::Deployed { release, .. } | LogEntry::RolledBack { release, .. } => {
                    Some(release)
                }
                LogEntry::Garbage(_) => None,
            };
            if held.is_none()
                && let Some(r) = named
                && !self.snap.releases.contains_key(r)
                && !self.st.known_releases.contains(r)
            {
                held = Some((i, r.clone()));
            }
            match entry {
                LogEntry::Deployed {
                    branch,
                    sha,
                    release,
                    user,
                } => self.log.deployed.push((
                    release.clone(),
                    branch.clone(),
                    sha.clone(),
                    user.clone(),
                )),
                LogEntry::RolledBack { user, release } => {
                    self.log.rolled_back.push((release.clone(), user.clone()))
                }
                LogEntry::Garbage(line) => self.anomaly(
                    format!("revisions.log:{}", i + 1),
                    format!(
                        "revisions.log line {} is not a Capistrano log line, ignored: {line:?}",
                        i + 1
                    ),
                ),
            }
        }
        let Some((index, release)) = held else {
            return;
        };
        let since = match self.st.log_hold_since {
            Some(t) if self.st.log_seen == index => t,
            _ => self.now,
        };
        if self.now.since(since) >= self.p.idle_timeout {
            self.anomaly(
                format!("revisions.log-unlisted:{}", index + 1),
                format!(
                    "revisions.log line {} names release {release}, which releases/ never listed; ignored",
                    index + 1
                ),
            );
            return;
        }
        self.log.consumed = Some(index);
        self.log.hold_since = Some(since);
        // Look again soon, backing off: the listing normally catches up at the next read.
        let waited = self.now.since(since);
        self.log.recheck_at = Some(
            self.now
                .plus((waited / 2).max(std::time::Duration::from_millis(250))),
        );
    }

    /// Deployer's lock appearing, or Capistrano's mirror moving to a commit no release
    /// carries, starts a pending deployment (when none is in progress).
    fn notice_pending(&mut self) {
        if !self.st.active.is_empty() {
            return;
        }
        match self.snap.flavour {
            Flavour::Deployer if self.lock_now() && !self.st.lock_held => {
                // Its commit is known only once its release carries it: held until then.
                let id = format!("pending-{}", self.st.next_serial + 1);
                self.create(None, id, false);
                if let Some(d) = self.st.active.last_mut() {
                    d.id_known = false;
                    d.pending_seen = true;
                }
            }
            Flavour::Capistrano => {
                if let Some(head) = &self.snap.repo_head {
                    let moved = self.st.repo_head.as_ref() != Some(head);
                    let carried =
                        self.snap.releases.values().any(|r| {
                            r.id().starts_with(head.as_str()) || head.starts_with(&r.id())
                        });
                    if moved && !carried {
                        self.create(None, head.clone(), false);
                        if let Some(d) = self.st.active.last_mut() {
                            d.commit = self.snap.repo_head_commit.clone();
                            d.branch = self.snap.repo_branch.clone();
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn notice_new_releases(&mut self) {
        let mut new: Vec<&Release> = self
            .snap
            .releases
            .values()
            .filter(|r| !self.st.known_releases.contains(&r.name) && !self.tracks(&r.name))
            .collect();
        new.sort_by(|a, b| release_order(&a.name, &b.name));
        for rel in new {
            let known = self.known_commit(rel);
            let (now, settle) = (self.now, self.p.settle);
            let d = match self.st.active.iter().position(|d| d.release.is_none()) {
                Some(i) => &mut self.st.active[i],
                None => {
                    self.create(Some(rel.name.clone()), rel.name.clone(), false);
                    let Some(d) = self.st.active.last_mut() else {
                        continue;
                    };
                    d.id_known = false;
                    d
                }
            };
            d.release = Some(rel.name.clone());
            d.key = rel.name.clone();
            // A lock seen in this same read as its release: no `pending` was observed
            // on its own, and skipped states are not invented.
            if d.received == now {
                d.pending_seen = false;
            }
            d.last_change = now;
            d.started.get_or_insert(now);
            attach_commit(d, known, now, settle, &rel.name);
        }
    }

    /// The commit a new release carries, if it can be known now: its own `REVISION` or
    /// git `HEAD`, else (Capistrano, which updates its mirror before it creates the
    /// release) the mirror's branch head, which is what the tool archives into it.
    fn known_commit(&self, rel: &Release) -> Option<(String, Option<CommitInfo>)> {
        match &rel.revision {
            Revision::Sha(s) => Some((s.clone(), rel.commit.clone())),
            _ if self.snap.flavour == Flavour::Capistrano => self
                .snap
                .repo_head
                .clone()
                .map(|h| (h, self.snap.repo_head_commit.clone())),
            _ => None,
        }
    }

    /// `current` moved to an existing release that no tracked deployment owns: a
    /// rollback (to an older release) or a switch, reported as a new deployment.
    fn notice_switch(&mut self, current: Option<&str>) {
        let Some(c) = current else { return };
        if self.st.current.as_deref() == Some(c) || self.tracks(c) {
            return;
        }
        if self.st.live.as_ref().is_some_and(|l| l.release == c) {
            return;
        }
        let rollback = self
            .st
            .live
            .as_ref()
            .is_some_and(|l| release_order(c, &l.release) == Ordering::Less);
        let id = self.snap.releases.get(c).map_or(c.to_string(), |r| r.id());
        self.create(Some(c.to_string()), id, rollback);
    }

    /// First sight of the site: what is live is the baseline; what is in progress is
    /// tracked (and reported from now on).
    fn baseline(&mut self, current: Option<&str>) {
        self.st.initialised = true;
        self.st.live = current.map(|c| Live {
            release: c.to_string(),
            id: self.snap.releases.get(c).map_or(c.to_string(), |r| r.id()),
        });
        let lock_now = self.lock_now();
        let release_link = self
            .snap
            .deployer
            .as_ref()
            .and_then(|d| d.release_link.clone());
        let mut in_progress: Vec<&Release> = self
            .snap
            .releases
            .values()
            .filter(|r| Some(r.name.as_str()) != current && !r.bad)
            .filter(|r| current.is_none_or(|c| release_order(&r.name, c) == Ordering::Greater))
            .filter(|r| {
                let building_now = lock_now && release_link.as_deref() == Some(r.name.as_str());
                building_now || self.now.since(r.modified) < self.p.idle_timeout
            })
            .collect();
        in_progress.sort_by(|a, b| release_order(&a.name, &b.name));
        for rel in in_progress {
            let known = self.known_commit(rel);
            self.create(Some(rel.name.clone()), rel.name.clone(), false);
            if let Some(d) = self.st.active.last_mut() {
                d.id_known = false;
                attach_commit(d, known, self.now, self.p.settle, &rel.name);
            }
        }
        if self.snap.flavour == Flavour::Deployer && lock_now && self.st.active.is_empty() {
            let id = format!("pending-{}", self.st.next_serial + 1);
            self.create(None, id, false);
            if let Some(d) = self.st.active.last_mut() {
                d.id_known = false;
                d.pending_seen = true;
            }
        }
    }

    fn tracks(&self, release: &str) -> bool {
        self.st
            .active
            .iter()
            .any(|d| d.release.as_deref() == Some(release))
    }

    fn create(&mut self, release: Option<String>, id: String, rollback: bool) {
        let lock_now = self.lock_now();
        let key = release.clone().unwrap_or_else(|| id.clone());
        let mut d = common::new_deployment(&mut self.st, key, release, id, self.now);
        d.rollback = rollback;
        d.lock_seen = lock_now;
        self.st.active.push(d);
    }

    /// Moves every tracked deployment to the level the snapshot shows.
    fn evaluate(&mut self, current: Option<&str>) {
        let switched = self.st.current.as_deref() != current;
        let mut active = std::mem::take(&mut self.st.active);
        active.sort_by_key(|d| d.serial);
        for d in &mut active {
            self.refresh(d, current, switched);
            let level = self.level(d, current);
            let (level, text) = common::gate_health(level, d, self.health, self.now, self.p);
            let (level, text) = if level.is_terminal() {
                (level, text)
            } else {
                match common::idle_failure(d, self.idle_since(d), self.now, self.p) {
                    Some(why) => (Status::Failed, why),
                    None => (level, text),
                }
            };
            if !d.id_known {
                // Its first transition waits for its commit, at most `settle`; a failure
                // is its last transition, so it goes out with the id it has.
                let expired = d.hold_until.is_some_and(|t| self.now >= t);
                if !(expired || level == Status::Failed) {
                    continue;
                }
                d.id_known = true;
                d.hold_until = None;
            }
            // Deployer's lock said `pending` while the id was held: that status goes out
            // first, now that it has its id.
            if d.pending_seen && !d.announced && level > Status::Pending {
                self.advance(d, Status::Pending, String::new());
            }
            self.advance(d, level, text);
        }
        active.retain(|d| !d.status.is_terminal());
        self.st.active = active;
    }

    /// Takes what the snapshot and the tool's logs say about `d` (id, commit, deployer,
    /// branch, times) and notices change.
    fn refresh(&mut self, d: &mut Deployment, current: Option<&str>, switched: bool) {
        if self.lock_now() {
            d.lock_seen = true;
        }
        if let Some(name) = d.release.clone() {
            self.refresh_release(d, &name, current, switched);
        }
        if d.deployer.is_none() {
            d.deployer = self
                .snap
                .deployer
                .as_ref()
                .and_then(|dep| dep.lock.clone())
                .filter(|u| !u.is_empty());
        }
        if let Some(dep) = &self.p.deployer {
            d.deployer = Some(dep.clone());
        }
        if d.branch.is_none() {
            d.branch = self
                .p
                .branch
                .clone()
                .or_else(|| self.snap.repo_branch.clone());
        }
    }

    fn refresh_release(
        &mut self,
        d: &mut Deployment,
        name: &str,
        current: Option<&str>,
        switched: bool,
    ) {
        if let Some(rel) = self.snap.releases.get(name) {
            if let Revision::Sha(sha) = &rel.revision {
                if !d.id_known {
                    d.id = sha.clone();
                    d.id_known = true;
                    d.hold_until = None;
                }
                if rel.commit.is_some() && same_commit(sha, &d.id) {
                    d.commit = rel.commit.clone();
                }
            }
            let fp = rel.fingerprint();
            if fp != d.fingerprint {
                // The change happened when the directory says, not when this read saw
                // it: a change inside a release makes no event, and a read at the idle
                // deadline must not restart the idle clock from its own time.
                d.fingerprint = fp;
                d.last_change = d.last_change.max(rel.modified.min(self.now));
            }
        }
        if switched && current == Some(name) {
            d.last_change = self.now;
        }
        if d.status >= Status::Deploying
            && current != Some(name)
            && self.snap.releases.contains_key(name)
            && d.switched_away.is_none()
        {
            d.switched_away = Some(self.now);
        }
        if let Some((_, branch, sha, user)) = self.log.deployed.iter().find(|e| e.0 == name) {
            d.branch = Some(branch.clone());
            d.deployer = Some(user.clone());
            if !d.id_known {
                d.id = sha.clone();
                d.id_known = true;
                d.hold_until = None;
            }
        }
        if let Some((_, user)) = self.log.rolled_back.iter().find(|e| e.0 == name) {
            d.deployer = Some(user.clone());
        }
        if let Some(entry) = self.snap.deployer.as_ref().and_then(|dep| {
            dep.releases_log
                .iter()
                .rev()
                .find(|e| e.release_name == name)
        }) {
            if let Some(user) = &entry.user {
                d.deployer = Some(user.clone());
            }
            if let Some(target) = &entry.target {
                d.branch = Some(target.clone());
            }
            if let Some(t) = entry.created_at {
                d.received = d.received.min(t);
                if d.status <= Status::Building {
                    d.started = Some(t);
                }
            }
        }
    }

    fn idle_since(&self, d: &Deployment) -> Timestamp {
        let modified = d
            .release
            .as_ref()
            .and_then(|n| self.snap.releases.get(n))
            .map_or(Timestamp(i64::MIN), |r| r.modified);
        d.last_change.max(modified)
    }

    fn quiet(&self, d: &Deployment) -> bool {
        self.now >= self.idle_since(d).plus(self.p.settle)
    }

    /// Whether `d`'s success waits for the release to be quiet for `settle`.
    fn settles(&self, d: &Deployment) -> bool {
        d.rollback
            || match self.snap.flavour {
                Flavour::Capistrano => false,
                Flavour::Deployer => !d.lock_seen,
                Flavour::Plain => true,
            }
    }

    /// The status the snapshot shows for `d`, with a `statusText` for failures.
    fn level(&self, d: &Deployment, current: Option<&str>) -> (Status, String) {
        let lock_now = self.lock_now();
        let Some(name) = d.release.as_deref() else {
            if self.snap.flavour == Flavour::Deployer && !lock_now && d.lock_seen {
                return (
                    Status::Failed,
                    "the deploy lock was released before a release directory was created".into(),
                );
            }
            return (Status::Pending, String::new());
        };
        if !d.rollback && self.log.deployed.iter().any(|e| e.0 == name) {
            return (Status::Success, String::new());
        }
        if d.rollback && self.log.rolled_back.iter().any(|e| e.0 == name) {
            return (Status::Success, String::new());
        }
        let release = self.snap.releases.get(name);
        if current == Some(name) {
            let unfinished = release.is_some_and(|r| r.unfinished);
            let done = if self.settles(d) {
                !unfinished && !lock_now && self.quiet(d)
            } else {
                self.snap.flavour == Flavour::Deployer && !lock_now
            };
            return if done {
                (Status::Success, String::new())
            } else {
                (Status::Deploying, String::new())
            };
        }
        if release.is_none() {
            return (
                Status::Failed,
                format!("release directory releases/{name} was removed before it went live"),
            );
        }
        if d.status >= Status::Deploying {
            // Seen switched away by this very read: the log this read took before
            // `current` may predate the line that finished it. A later read decides.
            if d.switched_away.is_none_or(|t| t >= self.now) {
                return (Status::Deploying, String::new());
            }
            return (
                Status::Failed,
                format!(
                    "current switched to {} before the deploy finished",
                    current.map_or("nothing".to_string(), |c| format!("releases/{c}"))
                ),
            );
        }
        if self.snap.flavour == Flavour::Deployer && d.lock_seen && !lock_now {
            return (
                Status::Failed,
                "the deploy lock was released before the release went live (deploy:failed)".into(),
            );
        }
        (Status::Building, String::new())
    }

    fn advance(&mut self, d: &mut Deployment, to: Status, text: String) {
        common::advance(&mut self.st, &mut self.transitions, self.now, d, to, text);
    }

    /// The next time something may change without a filesystem event: a settle or an
    /// idle deadline.
    fn wake_at(&self) -> Option<Timestamp> {
        self.st
            .active
            .iter()
            .flat_map(|d| {
                let since = self.idle_since(d);
                let settle = (self.st.current.as_deref() == d.release.as_deref()
                    && d.release.is_some()
                    && self.settles(d))
                .then(|| since.plus(self.p.settle));
                [
                    settle,
                    Some(since.plus(self.p.idle_timeout)),
                    common::health_deadline(d, self.p),
                    d.hold_until,
                ]
            })
            .flatten()
            .chain(
                // A switch away waits for one more read, soon.
                self.st
                    .active
                    .iter()
                    .filter(|d| d.switched_away == Some(self.now))
                    .map(|_| self.now.plus(std::time::Duration::from_millis(250))),
            )
            .filter(|t| *t > self.now)
            .min()
    }
}
