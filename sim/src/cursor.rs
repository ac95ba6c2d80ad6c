//! Page tokens of the v2 list: opaque to clients, meaningful only to the simulator.
//!
//! A token names the last batch served (its creation time and id), so a walk stays exact when new
//! batches arrive between pages (they sort first and are not met again). It is bound to the
//! tenant and to the filters of the walk, as AIP-158-style APIs bind theirs: a token used by
//! another tenant, with other filters, or altered in any way is refused (400, see the README).
//! The page size may change between pages.

use crate::batches::{ListFilter, ListPosition};

/// Marks the simulator's tokens and their format version.
const PREFIX: &str = "bpt1_";
/// Bytes of the keyed hash that makes a token tamper-evident.
const TAG_BYTES: usize = 12;
/// Key of that hash. Not a secret (the simulator has none); it only makes made-up tokens fail.
const KEY: [u8; 32] = *b"pollgate-sim page tokens, v1 ...";

fn tag(tenant: &str, filter: &ListFilter, payload: &[u8]) -> [u8; TAG_BYTES] {
    let mut hasher = blake3::Hasher::new_keyed(&KEY);
    hasher.update(tenant.as_bytes());
    hasher.update(&[0]);
    hasher.update(format!("{filter:?}").as_bytes());
    hasher.update(&[0]);
    hasher.update(payload);
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..TAG_BYTES]);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The token for continuing after `pos`.
pub fn encode(tenant: &str, filter: &ListFilter, pos: &ListPosition) -> String {
    let mut payload = pos.created_at.to_be_bytes().to_vec();
    payload.extend_from_slice(pos.id.as_bytes());
    let tag = tag(tenant, filter, &payload);
    format!("{PREFIX}{}{}", hex(&tag), hex(&payload))
}

/// The position a token names, if it is one of ours for this tenant and these filters.
pub fn decode(tenant: &str, filter: &ListFilter, token: &str) -> Option<ListPosition> {
    let bytes = unhex(token.strip_prefix(PREFIX)?)?;
    if bytes.len() < TAG_BYTES + 8 {
        return None;
    }
    let (given, payload) = bytes.split_at(TAG_BYTES);
    if given != tag(tenant, filter, payload) {
        return None;
    }
    let (time, id) = payload.split_at(8);
    Some(ListPosition {
        created_at: i64::from_be_bytes(time.try_into().ok()?),
        id: String::from_utf8(id.to_vec()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batches::BatchStatus;

    #[test]
    fn round_trips_and_refuses_everything_else() {
        let filter = ListFilter::default();
        let pos = ListPosition {
            created_at: 1_748_764_800_000_000,
            id: "bat-a-history-03".to_owned(),
        };
        let token = encode("t", &filter, &pos);
        assert_eq!(decode("t", &filter, &token), Some(pos));
        assert_eq!(decode("u", &filter, &token), None, "another tenant");
        let narrower = ListFilter {
            status: Some(BatchStatus::Completed),
            ..ListFilter::default()
        };
        assert_eq!(decode("t", &narrower, &token), None, "other filters");
        let mut altered = token.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(decode("t", &filter, &altered), None, "altered");
        for junk in ["", "x", "bpt1_", "bpt1_zz", "bpt1_00", "é"] {
            assert_eq!(decode("t", &filter, junk), None, "{junk:?}");
        }
    }
}
