//! The v2 batches: their data, their life (PENDING → RUNNING → COMPLETED), and how they render as
//! the SDK's `BatchGetResponse` (`llama-cloud` 2.19, `@llamaindex/llama-cloud` 2.16) describes them.
//!
//! A batch runs one job per file of a source directory. Its `results` (with `expand=results`)
//! has one entry per file: the file's id, a reference to the job made for it (null until made),
//! and an error when no job could be made. Content is a pure function of the batch's seed and each
//! file's state, so bodies are deterministic and only the per-file state is stored.
//!
//! Nothing changes on its own unless a step interval is set ([`Batches::set_step`]): then every
//! batch not yet finished takes one step per interval, counted from its creation (or from when the
//! interval was set). Time is read lazily on each access, from tokio's clock, so paused-time tests
//! can drive it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::data::{push_uuid, BASE_EPOCH_SECS};
use crate::pydantic::datetime::Micros;
use crate::tenants::TenantScope;

/// Files in a batch made through `POST /api/v2/batches`: the simulator has no directories to
/// count, so every new batch gets this many.
pub const CREATED_BATCH_FILES: usize = 20;
/// Finished batches seeded for tenant A besides [`crate::BATCH_A`] and [`crate::BATCH_A_DONE`], so
/// that list paging and filters have something to walk.
pub const BATCH_HISTORY_A: usize = 25;
/// Files in each seeded history batch.
const HISTORY_FILES: usize = 5;
/// Keeps the job ids of a batch apart from its file ids.
const JOB_ID_SALT: u64 = 0xa5a5_5a5a_c3c3_3c3c;
/// Why a file got no job; the SDK documents `error_message` as a "batch-level mapping error".
const MAPPING_ERROR: &str = "Could not create a job for this file: unsupported file type";

/// Status of a batch. `as_str` is the upper-case wire form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BatchStatus {
    Pending,
    Throttled,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl BatchStatus {
    /// In the order the published OpenAPI description lists them (pydantic's error message too).
    pub const ALL: [BatchStatus; 6] = [
        BatchStatus::Pending,
        BatchStatus::Throttled,
        BatchStatus::Running,
        BatchStatus::Completed,
        BatchStatus::Failed,
        BatchStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Pending => "PENDING",
            BatchStatus::Throttled => "THROTTLED",
            BatchStatus::Running => "RUNNING",
            BatchStatus::Completed => "COMPLETED",
            BatchStatus::Failed => "FAILED",
            BatchStatus::Cancelled => "CANCELLED",
        }
    }

    /// The exact wire form, as the API's `status` filter accepts it (upper case only).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Completed, failed or cancelled: nothing will change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            BatchStatus::Completed | BatchStatus::Failed | BatchStatus::Cancelled
        )
    }
}

/// The product job a batch runs per file (`config.job.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchJobType {
    ParseV2,
    ExtractV2,
}

impl BatchJobType {
    pub const ALL: [BatchJobType; 2] = [BatchJobType::ParseV2, BatchJobType::ExtractV2];

    pub fn as_str(self) -> &'static str {
        match self {
            BatchJobType::ParseV2 => "parse_v2",
            BatchJobType::ExtractV2 => "extract_v2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Prefix of the ids of the jobs it makes, as in the SDK's examples (`pjb-...`).
    fn job_prefix(self) -> &'static str {
        match self {
            BatchJobType::ParseV2 => "pjb",
            BatchJobType::ExtractV2 => "ejb",
        }
    }
}

/// What happened to one file of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileState {
    /// No job made yet: `job_reference` is null.
    Waiting,
    /// A job was made for it.
    Started,
    /// No job could be made: `error_message` says why.
    Unmapped,
}

/// One batch owned by one tenant.
#[derive(Debug)]
pub struct Batch {
    pub id: String,
    pub tenant: String,
    pub project_id: String,
    pub source_directory_id: String,
    pub job_type: BatchJobType,
    pub configuration_id: String,
    pub status: BatchStatus,
    pub created_at: Micros,
    pub updated_at: Micros,
    files: Vec<FileState>,
    seed: u64,
    /// When the next timed step is due, if steps are timed.
    next_step_at: Option<Instant>,
}

/// The state file `i` of `n` has in a batch created with `status`: a deterministic mix.
fn initial_file_state(status: BatchStatus, i: usize, n: usize) -> FileState {
    let made = if i % 29 == 7 {
        FileState::Unmapped
    } else {
        FileState::Started
    };
    match status {
        BatchStatus::Pending | BatchStatus::Throttled => FileState::Waiting,
        // The first 40 % have their jobs, the rest wait.
        BatchStatus::Running if i * 10 < n * 4 => made,
        BatchStatus::Running => FileState::Waiting,
        BatchStatus::Cancelled if i * 2 < n => made,
        BatchStatus::Cancelled => FileState::Waiting,
        BatchStatus::Completed | BatchStatus::Failed => made,
    }
}

/// Now, in microseconds since the Unix epoch.
pub(crate) fn wall_clock_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Batch {
    /// A batch of `files` files owned by `tenant`, created at `created_at`.
    pub fn new(
        id: &str,
        tenant: &str,
        files: usize,
        status: BatchStatus,
        created_at: Micros,
    ) -> Self {
        let hash = blake3::hash(id.as_bytes());
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&hash.as_bytes()[..8]);
        Batch {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            project_id: TenantScope::of(tenant).project_id,
            source_directory_id: format!("dir-{id}"),
            job_type: BatchJobType::ParseV2,
            configuration_id: "cfg-PARSE_AGENTIC".to_owned(),
            status,
            created_at,
            updated_at: created_at,
            files: (0..files)
                .map(|i| initial_file_state(status, i, files))
                .collect(),
            seed: u64::from_le_bytes(seed),
            next_step_at: None,
        }
    }

    /// Number of files (entries of `results`).
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Files whose job has been made.
    pub fn started_files(&self) -> usize {
        self.files
            .iter()
            .filter(|f| **f == FileState::Started)
            .count()
    }

    fn touch(&mut self, at: Micros) {
        // Strictly increasing, so every change shows in the body even within one microsecond.
        self.updated_at = at.max(self.updated_at + 1);
    }

    /// One step of the batch's life: PENDING/THROTTLED → RUNNING (jobs for the first 40 % of the
    /// files), RUNNING → COMPLETED (jobs for all). A finished batch does not move.
    pub fn advance(&mut self, at: Micros) -> BatchStatus {
        let next = match self.status {
            BatchStatus::Pending | BatchStatus::Throttled => BatchStatus::Running,
            BatchStatus::Running => BatchStatus::Completed,
            finished => return finished,
        };
        let n = self.files.len();
        for (i, f) in self.files.iter_mut().enumerate() {
            if *f == FileState::Waiting {
                let want = initial_file_state(next, i, n);
                *f = want;
            }
        }
        self.status = next;
        self.touch(at);
        next
    }

    /// Changes the body without changing the status: makes the job of the next waiting file
    /// and moves `updated_at`.
    pub fn mutate(&mut self, at: Micros) {
        if let Some(f) = self.files.iter_mut().find(|f| **f == FileState::Waiting) {
            *f = FileState::Started;
        }
        self.touch(at);
    }

    /// Cancels a batch not yet finished (files still waiting keep no job); returns whether
    /// anything changed. A finished batch stays as it is (see the README).
    pub fn cancel(&mut self, at: Micros) -> bool {
        if self.status.is_terminal() {
            return false;
        }
        self.status = BatchStatus::Cancelled;
        self.touch(at);
        true
    }

    /// Sets the status (files are left alone).
    pub fn set_status(&mut self, status: BatchStatus, at: Micros) {
        self.status = status;
        self.touch(at);
    }

    /// Writes the `BatchResponse` JSON. `results` is null unless `with_results`, and for a FAILED
    /// batch, which per the SDK's docs "cannot provide a reliable per-file result set".
    pub fn render(&self, with_results: bool, out: &mut String) {
        let text = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
        let _ = write!(
            out,
            "{{\"id\":{},\"created_at\":\"{}\",\"updated_at\":\"{}\",\"project_id\":{},\
             \"source_directory_id\":{},\"config\":{{\"job\":{{\"type\":\"{}\",\
             \"configuration_id\":{}}}}},\"status\":\"{}\",\"results\":",
            text(&self.id),
            format_micros(self.created_at),
            format_micros(self.updated_at),
            text(&self.project_id),
            text(&self.source_directory_id),
            self.job_type.as_str(),
            text(&self.configuration_id),
            self.status.as_str(),
        );
        if !with_results || self.status == BatchStatus::Failed {
            out.push_str("null}");
            return;
        }
        out.push('[');
        for (i, f) in self.files.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"source_directory_file_id\":\"dfl-");
            push_uuid(out, self.seed, i as u64);
            out.push_str("\",\"job_reference\":");
            if *f == FileState::Started {
                let _ = write!(
                    out,
                    "{{\"type\":\"{}\",\"id\":\"{}-",
                    self.job_type.as_str(),
                    self.job_type.job_prefix()
                );
                push_uuid(out, self.seed ^ JOB_ID_SALT, i as u64);
                out.push_str("\"}");
            } else {
                out.push_str("null");
            }
            out.push_str(",\"error_message\":");
            if *f == FileState::Unmapped {
                out.push_str(&text(MAPPING_ERROR));
            } else {
                out.push_str("null");
            }
            out.push('}');
        }
        out.push_str("]}");
    }

    /// The body of `GET /api/v2/batches/{id}`.
    pub fn to_json(&self, with_results: bool) -> Vec<u8> {
        let mut out = String::with_capacity(if with_results {
            320 + self.files.len() * 190
        } else {
            320
        });
        self.render(with_results, &mut out);
        out.into_bytes()
    }
}

/// Formats microseconds since the epoch as pydantic does: `2025-06-01T08:00:00Z`, with
/// `.ffffff` only when there are microseconds.
pub(crate) fn format_micros(micros: Micros) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let base = crate::data::format_rfc3339(u64::try_from(secs).unwrap_or(0), 0);
    // format_rfc3339 writes `.000Z`; swap in pydantic's fraction.
    let stem = base.trim_end_matches(".000Z");
    if frac == 0 {
        format!("{stem}Z")
    } else {
        format!("{stem}.{frac:06}Z")
    }
}

/// What a list request asks for, already validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ListFilter {
    pub status: Option<BatchStatus>,
    pub source_directory_id: Option<String>,
    pub created_at_on_or_after: Option<Micros>,
    pub created_at_on_or_before: Option<Micros>,
}

impl ListFilter {
    fn admits(&self, b: &Batch) -> bool {
        self.status.is_none_or(|s| s == b.status)
            && self
                .source_directory_id
                .as_deref()
                .is_none_or(|d| d == b.source_directory_id)
            && self
                .created_at_on_or_after
                .is_none_or(|t| b.created_at >= t)
            && self
                .created_at_on_or_before
                .is_none_or(|t| b.created_at <= t)
    }
}

/// Where a list is ordered: newest first, ties by id. A page token names the last batch served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPosition {
    pub created_at: Micros,
    pub id: String,
}

impl ListPosition {
    fn of(b: &Batch) -> Self {
        ListPosition {
            created_at: b.created_at,
            id: b.id.clone(),
        }
    }

    /// Whether `b` comes after this position in list order.
    fn precedes(&self, b: &Batch) -> bool {
        b.created_at < self.created_at || (b.created_at == self.created_at && b.id > self.id)
    }
}

/// Every batch, with the clock that moves them.
#[derive(Debug, Default)]
pub struct Batches {
    by_id: HashMap<String, Batch>,
    step: Option<Duration>,
    /// Batches made through the API so far; numbers their ids.
    created: u64,
}

impl Batches {
    /// The demo batches: tenant A's running one ([`crate::BATCH_A`], `files_a` files), its
    /// completed one, [`BATCH_HISTORY_A`] finished ones, and tenant B's running one.
    pub fn seeded(files_a: usize) -> Self {
        let mut batches = Batches::default();
        let hour = 3_600_000_000i64;
        let base = i64::try_from(BASE_EPOCH_SECS).unwrap_or(0) * 1_000_000;
        let tenant_a = crate::tenants::tenant_name(crate::TOKEN_A);
        let tenant_b = crate::tenants::tenant_name(crate::TOKEN_B);
        let mut a = Batch::new(
            crate::BATCH_A,
            &tenant_a,
            files_a,
            BatchStatus::Running,
            base + hour,
        );
        a.source_directory_id = crate::SOURCE_DIR_A.to_owned();
        batches.insert(a);
        let mut done = Batch::new(
            crate::BATCH_A_DONE,
            &tenant_a,
            10,
            BatchStatus::Completed,
            base,
        );
        done.source_directory_id = crate::SOURCE_DIR_A.to_owned();
        batches.insert(done);
        let history = [
            BatchStatus::Completed,
            BatchStatus::Completed,
            BatchStatus::Failed,
            BatchStatus::Cancelled,
            BatchStatus::Completed,
        ];
        for i in 0..BATCH_HISTORY_A {
            let id = format!("bat-a-history-{i:02}");
            let at = base - (i as i64 + 1) * hour;
            let mut b = Batch::new(
                &id,
                &tenant_a,
                HISTORY_FILES,
                history[i % history.len()],
                at,
            );
            b.source_directory_id = if i % 2 == 0 {
                crate::SOURCE_DIR_A.to_owned()
            } else {
                "dir-a-archive".to_owned()
            };
            if i % 3 == 2 {
                b.job_type = BatchJobType::ExtractV2;
                b.configuration_id = "cfg-EXTRACT_DEFAULT".to_owned();
            }
            batches.insert(b);
        }
        batches.insert(Batch::new(
            crate::BATCH_B,
            &tenant_b,
            50,
            BatchStatus::Running,
            base + hour,
        ));
        batches
    }

    /// Adds (or replaces) a batch; with timed steps on, its first step is one interval away.
    pub fn insert(&mut self, mut batch: Batch) {
        batch.next_step_at = self.step.map(|d| Instant::now() + d);
        self.by_id.insert(batch.id.clone(), batch);
    }

    /// An id for the next batch made through the API: `bat-` and a UUID, distinct per call.
    pub fn next_id(&mut self) -> String {
        self.created += 1;
        let mut out = String::from("bat-");
        push_uuid(&mut out, 0x6261_7463_6865_7321, self.created);
        out
    }

    /// Turns timed steps on (every batch not finished steps once per `step`, starting one
    /// interval from now) or off.
    pub fn set_step(&mut self, step: Option<Duration>) {
        self.catch_up();
        self.step = step;
        let first = step.map(|d| Instant::now() + d);
        for b in self.by_id.values_mut() {
            b.next_step_at = first;
        }
    }

    /// Applies every timed step due by now. Called before every read or change, so what a
    /// client sees is always current.
    pub fn catch_up(&mut self) {
        let Some(step) = self.step.filter(|d| !d.is_zero()) else {
            return;
        };
        let now = Instant::now();
        let wall = wall_clock_micros();
        for b in self.by_id.values_mut() {
            while let Some(due) = b.next_step_at.filter(|due| *due <= now) {
                if b.status.is_terminal() {
                    b.next_step_at = None;
                    break;
                }
                // Stamp the step with when it was due, not when it was noticed.
                let late = i64::try_from(now.duration_since(due).as_micros()).unwrap_or(0);
                b.advance(wall - late);
                b.next_step_at = Some(due + step);
            }
        }
    }

    /// The batch, whoever owns it (library and control use).
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Batch> {
        self.catch_up();
        self.by_id.get_mut(id)
    }

    /// The batch if it belongs to `tenant` (otherwise the API answers 404).
    pub fn get_for(&mut self, tenant: &str, id: &str) -> Option<&mut Batch> {
        self.get_mut(id).filter(|b| b.tenant == tenant)
    }

    /// One page of `tenant`'s batches matching `filter`, after `after`: the batches, the total
    /// number matching, and whether more follow.
    pub fn page(
        &mut self,
        tenant: &str,
        filter: &ListFilter,
        after: Option<&ListPosition>,
        size: usize,
    ) -> (Vec<&Batch>, usize, Option<ListPosition>) {
        self.catch_up();
        let mut matching: Vec<&Batch> = self
            .by_id
            .values()
            .filter(|b| b.tenant == tenant && filter.admits(b))
            .collect();
        matching.sort_by(|x, y| {
            y.created_at
                .cmp(&x.created_at)
                .then_with(|| x.id.cmp(&y.id))
        });
        let total = matching.len();
        let start = after.map_or(0, |pos| matching.partition_point(|b| !pos.precedes(b)));
        let page: Vec<&Batch> = matching.into_iter().skip(start).take(size).collect();
        let more = start + page.len() < total;
        let next = if more {
            page.last().map(|b| ListPosition::of(b))
        } else {
            None
        };
        (page, total, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(b: &Batch) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(&b.to_json(true)).unwrap();
        v["results"].as_array().cloned().unwrap_or_default()
    }

    #[test]
    fn renders_the_sdk_required_fields() {
        let b = Batch::new("bat-x", "tenant-sk-tenant-a", 30, BatchStatus::Running, 0);
        let v: serde_json::Value = serde_json::from_slice(&b.to_json(false)).unwrap();
        for field in ["id", "project_id", "source_directory_id", "status"] {
            assert!(v[field].is_string(), "{field}: {v}");
        }
        assert_eq!(v["config"]["job"]["type"], "parse_v2");
        assert!(v["config"]["job"]["configuration_id"].is_string());
        assert!(v["results"].is_null());
        assert_eq!(v["created_at"], "1970-01-01T00:00:00Z");
        let r = results(&b);
        assert_eq!(r.len(), 30);
        assert!(r[0]["job_reference"]["id"]
            .as_str()
            .unwrap()
            .starts_with("pjb-"));
        assert!(r[29]["job_reference"].is_null());
        assert!(r[7]["error_message"].is_string());
    }

    #[test]
    fn life_moves_one_step_at_a_time_and_stops_when_finished() {
        let mut b = Batch::new("bat-x", "t", 10, BatchStatus::Pending, 0);
        assert_eq!(b.started_files(), 0);
        assert_eq!(b.advance(1), BatchStatus::Running);
        assert_eq!(b.started_files(), 4);
        let before = b.to_json(true);
        b.mutate(2);
        assert_eq!(b.started_files(), 5);
        assert_ne!(before, b.to_json(true));
        assert_eq!(b.advance(3), BatchStatus::Completed);
        assert_eq!(b.started_files() + 1, 10, "one file could not be mapped");
        assert_eq!(b.advance(4), BatchStatus::Completed);
        assert!(!b.cancel(5));
        let mut f = Batch::new("bat-f", "t", 10, BatchStatus::Failed, 0);
        assert!(
            results(&f).is_empty(),
            "a failed batch has no reliable results"
        );
        f.set_status(BatchStatus::Running, 1);
        assert_eq!(results(&f).len(), 10);
    }

    #[test]
    fn formats_times_as_pydantic() {
        assert_eq!(format_micros(1_748_764_800_000_000), "2025-06-01T08:00:00Z");
        assert_eq!(
            format_micros(1_748_764_800_000_042),
            "2025-06-01T08:00:00.000042Z"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timed_steps_follow_the_clock() {
        let mut all = Batches::default();
        all.insert(Batch::new("bat-x", "t", 10, BatchStatus::Pending, 0));
        all.set_step(Some(Duration::from_secs(2)));
        let status = |all: &mut Batches| all.get_mut("bat-x").map(|b| b.status);
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_eq!(status(&mut all), Some(BatchStatus::Pending));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(status(&mut all), Some(BatchStatus::Running));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(status(&mut all), Some(BatchStatus::Completed));
        // A batch added later starts its own clock.
        all.insert(Batch::new("bat-y", "t", 10, BatchStatus::Pending, 0));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            all.get_mut("bat-y").map(|b| b.status),
            Some(BatchStatus::Pending)
        );
        all.set_step(None);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            all.get_mut("bat-y").map(|b| b.status),
            Some(BatchStatus::Pending)
        );
    }

    #[test]
    fn pages_walk_every_batch_once_even_when_new_ones_arrive() {
        let mut all = Batches::seeded(10);
        let tenant = crate::tenants::tenant_name(crate::TOKEN_A);
        let filter = ListFilter::default();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (page, total, next) = all.page(&tenant, &filter, after.as_ref(), 4);
            assert_eq!(total, BATCH_HISTORY_A + 2 + seen.len() / 8);
            seen.extend(page.iter().map(|b| b.id.clone()));
            let Some(next) = next else { break };
            after = Some(next);
            // A newer batch lands mid-walk; it sorts first, so the walk does not see it.
            if seen.len() % 8 == 0 {
                let id = all.next_id();
                all.insert(Batch::new(
                    &id,
                    &tenant,
                    1,
                    BatchStatus::Pending,
                    i64::MAX / 2,
                ));
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "no batch twice");
        assert_eq!(seen.len(), BATCH_HISTORY_A + 2, "every seeded batch");
    }
}
