//! The simulated world of the v1 routes: tenants, batch jobs and their items, and how they render
//! as the SDK's models (`BatchGetStatusResponse`, `BatchCancelResponse`, `JobItemListResponse` of
//! `llama-cloud` 2.13) describe them.
//!
//! Item content is a pure function of (job, index, item status, job revision), so pages are
//! deterministic and cheap to render without storing 2,500 pre-rendered items per job. Only the
//! per-item status is stored, because cancelling and [`crate::SimUpstream::mutate_job`] change it.
//!
//! An item's `job_id` is the id of the item's own processing job (the SDK documents it as "Job ID
//! for the underlying processing job (links to parse/extract job results)"), not the batch job's:
//! it is null until the item starts.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Fixed creation instant of every simulated job (2025-06-01T08:00:00Z), so bodies are reproducible.
pub(crate) const BASE_EPOCH_SECS: u64 = 1_748_764_800;
/// Seconds between consecutive items' start times; spreads timestamps like a real queue drains.
const ITEM_SPACING_SECS: u64 = 7;

/// Status of a whole batch job, as the SDK's `get_status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Dispatched,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// The lowercase wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Dispatched => "dispatched",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the lowercase wire form (used by the `/_sim` control endpoints).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "dispatched" => JobStatus::Dispatched,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    /// Completed, failed or cancelled: nothing will change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// Status of one item; the `status` query filter uses the same vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Skipped,
    Cancelled,
}

impl ItemStatus {
    pub const ALL: [ItemStatus; 6] = [
        ItemStatus::Pending,
        ItemStatus::Processing,
        ItemStatus::Completed,
        ItemStatus::Failed,
        ItemStatus::Skipped,
        ItemStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Pending => "pending",
            ItemStatus::Processing => "processing",
            ItemStatus::Completed => "completed",
            ItemStatus::Failed => "failed",
            ItemStatus::Skipped => "skipped",
            ItemStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    fn is_terminal(self) -> bool {
        !matches!(self, ItemStatus::Pending | ItemStatus::Processing)
    }
}

/// The initial status of item `i` of `n` in a job created with `status`: a deterministic mix.
fn initial_item_status(status: JobStatus, i: usize, n: usize) -> ItemStatus {
    let finished = |i: usize| {
        if i % 17 == 3 {
            ItemStatus::Failed
        } else if i % 23 == 5 {
            ItemStatus::Skipped
        } else {
            ItemStatus::Completed
        }
    };
    match status {
        JobStatus::Pending | JobStatus::Dispatched => ItemStatus::Pending,
        JobStatus::Completed => finished(i),
        JobStatus::Failed => {
            if i.is_multiple_of(3) {
                ItemStatus::Failed
            } else {
                finished(i)
            }
        }
        JobStatus::Cancelled => {
            if i * 2 < n {
                finished(i)
            } else {
                ItemStatus::Cancelled
            }
        }
        // Running: the first 40 % are done, the next 10 % in flight, the rest queued with a
        // few individually cancelled, so every status appears even in a 50-item job.
        JobStatus::Running => {
            if i * 10 < n * 4 {
                finished(i)
            } else if i * 10 < n * 5 {
                ItemStatus::Processing
            } else if i % 31 == 30 {
                ItemStatus::Cancelled
            } else {
                ItemStatus::Pending
            }
        }
    }
}

/// One batch job owned by one tenant.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    /// The tenant's project, which the status body names.
    pub project_id: String,
    pub status: JobStatus,
    pub items: Vec<ItemStatus>,
    /// Bumped on every change to item content; shifts `effective_at` so every page body changes.
    pub revision: u64,
    /// The job id JSON-escaped (without quotes), computed once because every item repeats it.
    escaped_id: String,
    /// Seed for the pseudo-random ids of this job's items.
    seed: u64,
}

impl Job {
    pub fn new(id: &str, tenant: &str, items: usize, status: JobStatus) -> Self {
        let quoted = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
        let escaped_id = quoted[1..quoted.len() - 1].to_owned();
        let hash = blake3::hash(id.as_bytes());
        let mut seed_bytes = [0u8; 8];
        seed_bytes.copy_from_slice(&hash.as_bytes()[..8]);
        Job {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            project_id: crate::tenants::TenantScope::of(tenant).project_id,
            status,
            items: (0..items)
                .map(|i| initial_item_status(status, i, items))
                .collect(),
            revision: 0,
            escaped_id,
            seed: u64::from_le_bytes(seed_bytes),
        }
    }

    /// Advances the first non-terminal item (pending → processing → completed) and bumps the
    /// revision, so the next item-list body differs whatever page is asked for.
    pub fn mutate(&mut self) {
        if let Some(st) = self.items.iter_mut().find(|s| !s.is_terminal()) {
            *st = match *st {
                ItemStatus::Pending => ItemStatus::Processing,
                _ => ItemStatus::Completed,
            };
        }
        self.revision += 1;
    }

    /// Cancels the job and every item not yet finished; returns whether anything changed. A
    /// finished job stays as it is (the real API's answer there is not documented; see the README).
    pub fn cancel(&mut self) -> bool {
        if self.status.is_terminal() {
            return false;
        }
        self.status = JobStatus::Cancelled;
        for st in self.items.iter_mut().filter(|s| !s.is_terminal()) {
            *st = ItemStatus::Cancelled;
        }
        self.revision += 1;
        true
    }

    fn count(&self, want: ItemStatus) -> usize {
        self.items.iter().filter(|s| **s == want).count()
    }

    /// Items completed, failed or skipped.
    fn processed(&self) -> usize {
        self.count(ItemStatus::Completed)
            + self.count(ItemStatus::Failed)
            + self.count(ItemStatus::Skipped)
    }

    /// The `get_status` body (`BatchJobStatusResponse`): every field the SDK's `Job` model
    /// requires (`id`, `job_type`, `project_id`, `status`, `total_items`) and the usual optional
    /// ones.
    pub fn render_status(&self) -> Vec<u8> {
        let total = self.items.len();
        let processed = self.processed();
        let progress = if total == 0 {
            0.0
        } else {
            processed as f64 * 100.0 / total as f64
        };
        let started = !matches!(self.status, JobStatus::Pending | JobStatus::Dispatched);
        let time = |secs: u64| format_rfc3339(secs, 0);
        let changed = BASE_EPOCH_SECS + 60 + self.revision;
        let body = serde_json::json!({
            "job": {
                "id": self.id,
                "job_type": "parse",
                "project_id": self.project_id,
                "status": self.status.as_str(),
                "total_items": total,
                "processed_items": processed,
                "failed_items": self.count(ItemStatus::Failed),
                "skipped_items": self.count(ItemStatus::Skipped),
                "directory_id": format!("dir-{}", self.id),
                "created_at": time(BASE_EPOCH_SECS),
                "updated_at": time(changed),
                "effective_at": time(changed),
                "started_at": started.then(|| time(BASE_EPOCH_SECS + 60)),
                "completed_at": self.status.is_terminal().then(|| time(changed)),
                "error_message": (self.status == JobStatus::Failed)
                    .then_some("Batch job failed: too many item failures"),
                "job_record_id": null,
                "workflow_id": format!("batch-{}", self.id),
            },
            "progress_percentage": progress,
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The cancel body (`BatchJobCancelResponse`), once [`Job::cancel`] said whether it changed
    /// anything.
    pub fn render_cancel(&self, changed: bool) -> Vec<u8> {
        let message = if changed {
            "Batch job cancelled".to_owned()
        } else {
            format!(
                "Batch job is already {}; nothing to cancel",
                self.status.as_str()
            )
        };
        let body = serde_json::json!({
            "job_id": self.id,
            "status": self.status.as_str(),
            "processed_items": self.processed(),
            "message": message,
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// One page of the item list: `{"items":[...],"next_page_token":...,"total_size":N}`.
    pub fn render_items(&self, offset: u64, limit: u64, filter: Option<ItemStatus>) -> Vec<u8> {
        let matching = self
            .items
            .iter()
            .enumerate()
            .filter(|(_, st)| filter.is_none_or(|f| f == **st));
        let total = match filter {
            None => self.items.len(),
            Some(_) => matching.clone().count(),
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut out = String::with_capacity(take.min(total.saturating_sub(start)) * 400 + 96);
        out.push_str("{\"items\":[");
        let mut returned = 0usize;
        for (i, st) in matching.skip(start).take(take) {
            if returned > 0 {
                out.push(',');
            }
            self.write_item(&mut out, i, *st);
            returned += 1;
        }
        out.push(']');
        let next = start.saturating_add(returned);
        if returned > 0 && next < total {
            // Opaque to clients; the SDK paginates by offset and total_size, not by this token.
            let _ = write!(
                out,
                ",\"next_page_token\":\"pgt_{:012x}\"",
                next as u64 ^ self.seed
            );
        }
        let _ = write!(out, ",\"total_size\":{total}}}");
        out.into_bytes()
    }

    fn write_item(&self, out: &mut String, i: usize, st: ItemStatus) {
        let start = BASE_EPOCH_SECS + 60 + i as u64 * ITEM_SPACING_SECS;
        let millis = (i as u64 * 37) % 1000;
        let _ = write!(
            out,
            "{{\"item_id\":\"{job}-item-{i:05}\",\"item_name\":\"document-{i:05}.pdf\",\"status\":\"{status}\"",
            job = self.escaped_id,
            status = st.as_str(),
        );
        let started = !matches!(st, ItemStatus::Pending);
        let finished = st.is_terminal();
        out.push_str(",\"completed_at\":");
        push_time_or_null(out, finished, start + 5, millis);
        out.push_str(",\"started_at\":");
        push_time_or_null(out, started, start, millis);
        out.push_str(",\"effective_at\":");
        push_time_or_null(out, true, start + 5 + self.revision, millis);
        out.push_str(",\"error_message\":");
        out.push_str(match st {
            ItemStatus::Failed => {
                "\"Parse failed: document is password protected (attempt 3 of 3)\""
            }
            _ => "null",
        });
        out.push_str(",\"job_id\":");
        if started {
            out.push('"');
            push_uuid(out, self.seed ^ 0x9e37_79b9_7f4a_7c15, i as u64);
            out.push('"');
        } else {
            out.push_str("null");
        }
        out.push_str(",\"job_record_id\":\"");
        push_uuid(out, self.seed, i as u64);
        out.push_str("\",\"skip_reason\":");
        out.push_str(match st {
            ItemStatus::Skipped if i.is_multiple_of(2) => "\"already_processed\"",
            ItemStatus::Skipped => "\"size_limit_exceeded\"",
            _ => "null",
        });
        out.push('}');
    }
}

fn push_time_or_null(out: &mut String, present: bool, secs: u64, millis: u64) {
    if present {
        out.push('"');
        out.push_str(&format_rfc3339(secs, millis));
        out.push('"');
    } else {
        out.push_str("null");
    }
}

/// splitmix64: a cheap, well-mixed deterministic generator for fake ids.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub(crate) fn push_uuid(out: &mut String, seed: u64, i: u64) {
    let a = mix(seed ^ i);
    let b = mix(a ^ i.rotate_left(17));
    let _ = write!(
        out,
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    );
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
pub(crate) fn format_rfc3339(secs: u64, millis: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Tenants (by credential) and their jobs.
#[derive(Debug, Default)]
pub struct World {
    /// credential → tenant name
    pub tenants: HashMap<String, String>,
    pub jobs: HashMap<String, Job>,
}

impl World {
    /// The demo data: two tenants, two running jobs and one finished one.
    pub fn seeded(items_per_job: usize) -> Self {
        let mut world = World::default();
        world.add_job(
            crate::TOKEN_A,
            crate::JOB_A,
            items_per_job,
            JobStatus::Running,
        );
        world.add_job(crate::TOKEN_A, crate::JOB_A_DONE, 10, JobStatus::Completed);
        world.add_job(crate::TOKEN_B, crate::JOB_B, 50, JobStatus::Running);
        world
    }

    /// Adds (or replaces) a job owned by the tenant of `token`; an unknown token becomes a new
    /// tenant, so tests can create extra tenants without another API.
    pub fn add_job(&mut self, token: &str, job_id: &str, items: usize, status: JobStatus) {
        let tenant = self.ensure_tenant(token);
        self.jobs
            .insert(job_id.to_owned(), Job::new(job_id, &tenant, items, status));
    }

    /// The tenant of `token`, made on first use.
    pub fn ensure_tenant(&mut self, token: &str) -> String {
        self.tenants
            .entry(token.to_owned())
            .or_insert_with(|| crate::tenants::tenant_name(token))
            .clone()
    }

    /// The job if it exists and belongs to `tenant` (otherwise the API answers 404).
    pub fn job_for(&self, tenant: &str, job_id: &str) -> Option<&Job> {
        self.jobs.get(job_id).filter(|j| j.tenant == tenant)
    }

    pub fn job_for_mut(&mut self, tenant: &str, job_id: &str) -> Option<&mut Job> {
        self.jobs.get_mut(job_id).filter(|j| j.tenant == tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(BASE_EPOCH_SECS, 5),
            "2025-06-01T08:00:00.005Z"
        );
    }

    #[test]
    fn status_and_cancel_bodies_have_the_sdk_required_fields() {
        let mut job = Job::new("j", "tenant-sk-tenant-a", 20, JobStatus::Running);
        let v: serde_json::Value = serde_json::from_slice(&job.render_status()).unwrap();
        for field in ["id", "job_type", "project_id", "status", "total_items"] {
            assert!(!v["job"][field].is_null(), "{field}: {v}");
        }
        assert_eq!(v["job"]["project_id"], crate::PROJECT_A);
        assert!(job.cancel());
        let v: serde_json::Value = serde_json::from_slice(&job.render_cancel(true)).unwrap();
        assert_eq!(v["job_id"], "j");
        assert_eq!(v["status"], "cancelled");
        assert_eq!(v["message"], "Batch job cancelled");
        assert!(v["processed_items"].is_u64());
        assert!(!job.cancel(), "a finished job stays as it is");
        let v: serde_json::Value = serde_json::from_slice(&job.render_cancel(false)).unwrap();
        assert_eq!(
            v["message"],
            "Batch job is already cancelled; nothing to cancel"
        );
    }

    #[test]
    fn running_job_has_every_status_and_sized_items() {
        let job = Job::new("job-b-running", "t", 50, JobStatus::Running);
        for st in ItemStatus::ALL {
            assert!(job.items.contains(&st), "{st:?} missing");
        }
        let big = Job::new("job-a-running", "t", 2500, JobStatus::Running);
        let page = big.render_items(0, 1000, None);
        let v: serde_json::Value = serde_json::from_slice(&page).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 1000);
        let per_item = page.len() / 1000;
        assert!((300..=420).contains(&per_item), "{per_item} bytes per item");
    }
}
