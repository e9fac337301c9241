//! Limits on what a source call returns: not much more than the call's
//! `limit` of records (twice it: a connector may round a page up, to end
//! it at a whole transaction or add the deletes of its span), no more
//! record text than `limits.page_max_mib`, and a cursor
//! that moves (a page whose `next` is the cursor it was read at would be
//! read for ever). A call that breaks one fails with an error naming the
//! system and the limit; the other systems go on.

use super::types::Change;
use super::{CallError, Instance};

/// Checks a page or batch of `items` returned for `limit` records;
/// `stuck`: its cursor to go on from is the one it was asked at.
pub(super) fn check(
    instance: &Instance,
    items: &[Change],
    limit: u32,
    stuck: bool,
) -> Result<(), CallError> {
    let stop = |what: String| {
        Err(CallError::Output {
            system: instance.system.clone(),
            what,
        })
    };
    if items.len() > (limit as usize).saturating_mul(2).max(1) {
        return stop(format!(
            "returned {} records, more than twice the {limit} the call asked for",
            items.len()
        ));
    }
    let max = instance.limits.page_max_bytes;
    let bytes: usize = items.iter().map(size).sum();
    if bytes > max {
        return stop(format!(
            "returned {} MiB of records in one call, more than limits.page_max_mib = {}",
            bytes.div_ceil(1 << 20),
            max >> 20
        ));
    }
    if stuck {
        return stop(
            "returned the cursor it was asked at as the one to go on from: it would read the same records for ever"
                .to_string(),
        );
    }
    Ok(())
}

/// The text a change carries.
fn size(c: &Change) -> usize {
    c.id.len()
        + c.data.as_ref().map_or(0, String::len)
        + c.previous.as_ref().map_or(0, String::len)
        + c.version.as_ref().map_or(0, String::len)
        + c.actor.as_ref().map_or(0, String::len)
}
