//! A per-thread memo of recent canonical queries: pollers repeat the same query string.
//!
//! Canonicalizing (split, decode, validate, normalize, sort, apply defaults) is a pure
//! function of the route's parameter table and the raw query text, and was the largest
//! piece of pollgate's own work on a hit (about 1,200 instructions of a small page's
//! ~18,000). A dashboard or worker polls one URL over and over, so each thread keeps the
//! last few answers, keyed on the exact raw bytes. Only valid queries are kept (a 422 is
//! rebuilt each time, with its full error list), and only short ones, in fixed inline
//! buffers: a lookup or a replacement never allocates, so a stream of distinct queries
//! costs two small copies each, not a heap churn. Nothing here can go stale: the route
//! table is `'static` and the text is compared byte for byte.

use std::cell::RefCell;

use super::query::Param;

/// Raw queries longer than this are canonicalized every time.
const RAW_MAX: usize = 64;
/// Canonical queries longer than this are not kept.
const CANON_MAX: usize = 128;
/// Recent queries kept per thread (replaced round-robin).
const SLOTS: usize = 16;

#[derive(Clone, Copy)]
struct Slot {
    /// The route's parameter table, by address (each route's is a distinct `'static`).
    params: usize,
    raw_len: u8,
    canon_len: u8,
    raw: [u8; RAW_MAX],
    canon: [u8; CANON_MAX],
}

const EMPTY: Slot = Slot {
    params: 0,
    raw_len: 0,
    canon_len: 0,
    raw: [0; RAW_MAX],
    canon: [0; CANON_MAX],
};

struct Memo {
    slots: [Slot; SLOTS],
    used: usize,
    next: usize,
}

thread_local! {
    static MEMO: RefCell<Memo> = const {
        RefCell::new(Memo { slots: [EMPTY; SLOTS], used: 0, next: 0 })
    };
}

fn id(params: &'static [Param]) -> usize {
    params.as_ptr() as usize
}

/// Append the remembered canonical form of `raw` for `params` to `out`; false when unknown.
pub fn recall(params: &'static [Param], raw: &str, out: &mut String) -> bool {
    if raw.len() > RAW_MAX {
        return false;
    }
    let params = id(params);
    MEMO.with(|m| {
        let m = m.borrow();
        let Some(slot) = m.slots[..m.used].iter().find(|s| {
            s.params == params && s.raw.get(..usize::from(s.raw_len)) == Some(raw.as_bytes())
        }) else {
            return false;
        };
        // Stored from a `&str` (whole), so always valid UTF-8; `false` would only recompute.
        match std::str::from_utf8(&slot.canon[..usize::from(slot.canon_len)]) {
            Ok(canon) => {
                out.push_str(canon);
                true
            }
            Err(_) => false,
        }
    })
}

/// Remember that `raw` is valid for `params` and canonicalizes to `canon`.
pub fn remember(params: &'static [Param], raw: &str, canon: &str) {
    let (Ok(raw_len), Ok(canon_len)) = (u8::try_from(raw.len()), u8::try_from(canon.len())) else {
        return;
    };
    if raw.len() > RAW_MAX || canon.len() > CANON_MAX {
        return;
    }
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let i = m.next;
        m.next = (i + 1) % SLOTS;
        m.used = (m.used + 1).min(SLOTS);
        let slot = &mut m.slots[i];
        slot.params = id(params);
        slot.raw_len = raw_len;
        slot.canon_len = canon_len;
        slot.raw[..raw.len()].copy_from_slice(raw.as_bytes());
        slot.canon[..canon.len()].copy_from_slice(canon.as_bytes());
    });
}
