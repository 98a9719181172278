//! Building a namespace's name index from its rows: a page of sealed names at a time, opened
//! by a few threads.

use std::sync::atomic::{AtomicBool, Ordering};

use super::index::Names;
use super::namespace::OpenNamespace;
use crate::StoreError;
use crate::backend::Backend;

/// Most threads opening names at once while a name index is built (one fewer than the
/// machine's cores).
const SCAN_THREADS: usize = 4;

/// Reads every live secret's id and sealed name of a namespace, a page at a time, and opens
/// the names, the page split among a few threads: the start of its name index. It holds
/// one page of sealed names at a time; what it keeps is the index. Pages are read in
/// separate transactions, so rows may change between them: the index's change log covers
/// every change made since the store was opened (see [`index`]).
pub(super) fn scan<B: Backend + ?Sized>(
    backend: &B,
    ns: &OpenNamespace,
    closing: &AtomicBool,
    page_rows: usize,
) -> Result<Names, StoreError> {
    // One core is left to the requests served meanwhile: on two cores the build opening
    // names on both held a starting daemon's first answer back by more than a second.
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_sub(1)
        .clamp(1, SCAN_THREADS);
    let mut named: Vec<(Box<str>, crate::SecretId)> = Vec::new();
    let mut after: Option<crate::SecretId> = None;
    loop {
        if closing.load(Ordering::Relaxed) {
            return Err(StoreError::unavailable(
                "building the name index",
                "the store is closing",
            ));
        }
        let page = backend.names(&ns.id, after.as_ref(), page_rows)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(*last);
        let open = |rows: &[(crate::SecretId, Vec<u8>)]| {
            rows.iter()
                .map(|(id, ct)| Ok((ns.open_name(id, ct)?.as_str().into(), *id)))
                .collect::<Result<Vec<_>, StoreError>>()
        };
        if threads == 1 || page.len() < 2 * threads {
            named.extend(open(&page)?);
            continue;
        }
        let chunk = page.len().div_ceil(threads);
        let opened: Vec<Result<Vec<_>, StoreError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = page
                .chunks(chunk)
                .map(|rows| scope.spawn(move || open(rows)))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or(Err(StoreError::Malformed("opening names failed")))
                })
                .collect()
        });
        for part in opened {
            named.extend(part?);
        }
    }
    named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Names::scanned(named.into_iter().collect()))
}
