//! Who owns what: each tenant (one per credential) has one organization and one project, and
//! `authenticate` tells which tenant a request is.
//!
//! Every route takes `project_id` and `organization_id` query parameters. The simulator reads them
//! as a scope: a job or batch is found only when the scope given (if any) is its tenant's, so a
//! well-formed UUID naming someone else's project gets the same 404 as an unknown id, and a v2
//! list filtered by it is empty. The real API's answer for a project the caller cannot see is not
//! documented; this is the simulator's choice (see the README).

use crate::error::ApiError;
use crate::pydantic::uuid::Uuid;
use crate::State;

/// Project of demo tenant A ([`crate::TOKEN_A`]).
pub const PROJECT_A: &str = "5f3c1a2e-7b4d-4e8a-9c61-0a1b2c3d4e5f";
/// Organization of demo tenant A.
pub const ORG_A: &str = "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a";
/// Project of demo tenant B ([`crate::TOKEN_B`]).
pub const PROJECT_B: &str = "8e1f2a3b-4c5d-4e6f-a7b8-c9d0e1f2a3b4";
/// Organization of demo tenant B.
pub const ORG_B: &str = "3a4b5c6d-7e8f-4a9b-8c0d-1e2f3a4b5c6d";

/// The organization and project of one tenant, in the lower-case hyphenated form the API returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantScope {
    pub project_id: String,
    pub organization_id: String,
}

impl TenantScope {
    /// The scope of the tenant named `tenant`: fixed for the demo tenants, derived from the name
    /// for any other, so it is stable across runs.
    pub fn of(tenant: &str) -> TenantScope {
        let fixed = |project: &str, org: &str| TenantScope {
            project_id: project.to_owned(),
            organization_id: org.to_owned(),
        };
        if tenant == tenant_name(crate::TOKEN_A) {
            return fixed(PROJECT_A, ORG_A);
        }
        if tenant == tenant_name(crate::TOKEN_B) {
            return fixed(PROJECT_B, ORG_B);
        }
        TenantScope {
            project_id: derived_uuid("project", tenant),
            organization_id: derived_uuid("organization", tenant),
        }
    }

    /// Whether a request scoped by these (already validated) query values may see this tenant's
    /// resources. An absent value does not narrow.
    pub fn admits(&self, project_id: Option<Uuid>, organization_id: Option<Uuid>) -> bool {
        project_id.is_none_or(|p| p.hyphenated() == self.project_id)
            && organization_id.is_none_or(|o| o.hyphenated() == self.organization_id)
    }
}

/// The tenant of the request's credential, or the 401 FastAPI's auth dependency answers.
pub(crate) fn authenticate(state: &State, token: Option<&str>) -> Result<String, ApiError> {
    let token = token.ok_or(ApiError::NotAuthenticated)?;
    state
        .world()
        .tenants
        .get(token)
        .cloned()
        .ok_or(ApiError::InvalidKey)
}

/// The tenant a credential unknown so far becomes.
pub fn tenant_name(token: &str) -> String {
    format!("tenant-{token}")
}

/// A version-4-shaped UUID from a hash of `kind` and `name`.
fn derived_uuid(kind: &str, name: &str) -> String {
    let hash = blake3::hash(format!("{kind}:{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_bytes()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid(bytes).hyphenated()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pydantic::uuid::parse;

    #[test]
    fn demo_scopes_are_fixed_and_others_stable() {
        let a = TenantScope::of(&tenant_name(crate::TOKEN_A));
        assert_eq!(a.project_id, PROJECT_A);
        let x = TenantScope::of("tenant-x");
        assert_eq!(x, TenantScope::of("tenant-x"));
        assert_ne!(x.project_id, x.organization_id);
        for id in [PROJECT_A, ORG_A, PROJECT_B, ORG_B, &x.project_id] {
            assert_eq!(parse(id).map(|u| u.hyphenated()).as_deref(), Ok(id));
        }
    }

    #[test]
    fn scope_admits_any_spelling_of_its_own_ids_only() {
        let a = TenantScope::of(&tenant_name(crate::TOKEN_A));
        let p = parse(&PROJECT_A.to_uppercase().replace('-', "")).ok();
        assert!(a.admits(p, None));
        assert!(a.admits(None, parse(ORG_A).ok()));
        assert!(!a.admits(parse(PROJECT_B).ok(), None));
        assert!(!a.admits(p, parse(ORG_B).ok()));
    }
}
