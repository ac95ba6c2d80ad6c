//! A per-thread memo of recent canonical queries: pollers repeat the same query string.
//!
//! Canonicalizing (split, decode, validate, normalize, sort, apply defaults) is a pure
//! function of the route's parameter table and the raw query text, and was the largest
//! piece of pollgate's own work on a hit (about 1,200 instructions of a small page's
//! ~18,000). A dashboard or worker polls one URL over and over, so each thread keeps the
//! last few answers, keyed on the exact raw bytes. Only valid queries are kept (a 422 is
//! rebuilt each time, with its full error list), and only short ones, in slots whose
//! buffers are reused: a lookup never allocates, and once the slots have grown a
//! replacement does not either, so a stream of distinct queries costs two small copies
//! each, not a heap churn. Nothing here can go stale: the route table is `'static` and the
//! text is compared byte for byte.

use std::cell::RefCell;

use super::query::Param;

/// Raw queries longer than this are canonicalized every time.
const RAW_MAX: usize = 64;
/// Canonical queries longer than this are not kept.
const CANON_MAX: usize = 128;
/// Recent queries kept per thread (replaced round-robin).
const SLOTS: usize = 16;

#[derive(Default)]
struct Slot {
    /// The route's parameter table, by address (each route's is a distinct `'static`).
    params: usize,
    raw: String,
    canon: String,
}

#[derive(Default)]
struct Memo {
    slots: Vec<Slot>,
    next: usize,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
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
        match m.slots.iter().find(|s| s.params == params && s.raw == raw) {
            Some(slot) => {
                out.push_str(&slot.canon);
                true
            }
            None => false,
        }
    })
}

/// Remember that `raw` is valid for `params` and canonicalizes to `canon`.
pub fn remember(params: &'static [Param], raw: &str, canon: &str) {
    if raw.len() > RAW_MAX || canon.len() > CANON_MAX {
        return;
    }
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let i = m.next;
        m.next = (i + 1) % SLOTS;
        if m.slots.len() <= i {
            m.slots.push(Slot::default());
        }
        let Some(slot) = m.slots.get_mut(i) else {
            return;
        };
        slot.params = id(params);
        slot.raw.clear();
        slot.raw.push_str(raw);
        slot.canon.clear();
        slot.canon.push_str(canon);
    });
}
