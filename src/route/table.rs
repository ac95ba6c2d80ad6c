//! The route table: every polling route pollgate caches.
//!
//! Schemas come from the API's published OpenAPI description
//! (`shared/api/openapi-polling.md`). Adding a polling route is one entry here
//! plus its tests.

use super::{Invalidation, Kind, Param, Route, Scope, Seg, StatusAt, Terminal};
use crate::key::ResourceKind;

use Seg::{Id, Lit};

// Consecutive literal segments are one literal: fewer steps per match on every request.
const V1_JOB: &[Seg] = &[Lit("api/v1/beta/batch-processing"), Id];
const V1_ITEMS: &[Seg] = &[Lit("api/v1/beta/batch-processing"), Id, Lit("items")];
const V2_BATCHES: &[Seg] = &[Lit("api/v2/batches")];
const V2_BATCH: &[Seg] = &[Lit("api/v2/batches"), Id];

/// `project_id` and `organization_id`: UUIDs on every route.
const PROJECT_ID: Param = Param::scalar("project_id", Kind::Uuid);
const ORGANIZATION_ID: Param = Param::scalar("organization_id", Kind::Uuid);

/// BatchFileStatus, the item status filter of v1.
const ITEM_STATUSES: &[&str] = &[
    "pending",
    "processing",
    "completed",
    "failed",
    "skipped",
    "cancelled",
];
/// The status filter of the v2 batch list (a `Literal` in the API, not an `Enum`).
const BATCH_STATUSES: &[&str] = &[
    "PENDING",
    "THROTTLED",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
];

/// Documented defaults, made explicit in the canonical query (source: the OpenAPI
/// description of `list_batch_job_items`: `limit` default 100, `offset` default 0).
const ITEMS_LIMIT_DEFAULT: &str = "100";
const ITEMS_OFFSET_DEFAULT: &str = "0";

/// Any write below a v1 job (cancel, for example) changes its items and its status.
const V1_JOB_WRITES: &[Invalidation] = &[Invalidation {
    below: V1_JOB,
    scope: Scope::SameResource,
}];

pub static ROUTES: [Route; 4] = [
    Route {
        name: "items",
        path: V1_ITEMS,
        resource: Some(ResourceKind::Job),
        params: &[
            Param::scalar(
                "limit",
                Kind::Int {
                    min: Some(1),
                    max: Some(1000),
                },
            )
            .with_default(ITEMS_LIMIT_DEFAULT),
            Param::scalar(
                "offset",
                Kind::Int {
                    min: Some(0),
                    max: None,
                },
            )
            .with_default(ITEMS_OFFSET_DEFAULT),
            Param::scalar("status", Kind::Enum(ITEM_STATUSES)),
            PROJECT_ID,
            ORGANIZATION_ID,
        ],
        terminal: Terminal::KnownJob,
        invalidated_by: V1_JOB_WRITES,
    },
    Route {
        name: "job",
        path: V1_JOB,
        resource: Some(ResourceKind::Job),
        params: &[PROJECT_ID, ORGANIZATION_ID],
        terminal: Terminal::Body {
            at: StatusAt::InJob,
            values: &["completed", "failed", "cancelled"],
            teaches_jobs: true,
        },
        invalidated_by: V1_JOB_WRITES,
    },
    Route {
        name: "batch",
        path: V2_BATCH,
        resource: Some(ResourceKind::Batch),
        params: &[
            // "Fields to expand. Supported value: results." Every value is kept and forwarded.
            Param::list("expand", Kind::Text),
            PROJECT_ID,
            ORGANIZATION_ID,
        ],
        terminal: Terminal::Body {
            at: StatusAt::TopLevel,
            values: &["COMPLETED", "FAILED", "CANCELLED"],
            teaches_jobs: false,
        },
        // Cancel, and any other write below the batch.
        invalidated_by: &[Invalidation {
            below: V2_BATCH,
            scope: Scope::SameResource,
        }],
    },
    Route {
        name: "batches",
        path: V2_BATCHES,
        resource: None,
        params: &[
            PROJECT_ID,
            ORGANIZATION_ID,
            // No bounds are published: an integer, and the upstream decides the rest.
            Param::scalar(
                "page_size",
                Kind::Int {
                    min: None,
                    max: None,
                },
            ),
            // An opaque cursor: part of the key, forwarded as sent.
            Param::scalar("page_token", Kind::Text),
            Param::scalar("status", Kind::Literal(BATCH_STATUSES)),
            Param::scalar("source_directory_id", Kind::Text),
            // Date-times are forwarded as sent; the upstream parses them.
            Param::scalar("created_at_on_or_after", Kind::Text),
            Param::scalar("created_at_on_or_before", Kind::Text),
        ],
        // A list page stays on the normal TTL even when every batch in it is finished.
        terminal: Terminal::Never,
        // Creating or cancelling a batch (any write below /api/v2/batches) changes the lists.
        invalidated_by: &[Invalidation {
            below: V2_BATCHES,
            scope: Scope::WholeRoute,
        }],
    },
];
