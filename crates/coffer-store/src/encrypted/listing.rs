//! Lists: pages of names and summaries, folder listings, and revoked secrets.
//!
//! Live names come from the namespace's name index ([`super::index`]) in chunks: each chunk
//! is copied out under the index's lock, and the caller's filter runs outside it, so a slow
//! policy never holds up writers. Chunks start small and grow while a filter refuses names,
//! so a page of 10 reads about 10 names and a sparse filter does not cost one lock per name.

use std::ops::Bound;

use coffer_types::{Namespace, SecretMeta, SecretName, SecretSummary};

use super::{EncryptedStore, OpenNamespace, scan};
use crate::StoreError;
use crate::backend::{Backend, SecretRow};
use crate::store::{ListQuery, NameFilter, Page};

/// The smallest and largest chunk of names copied out of an index at once.
const MIN_CHUNK: usize = 16;
const MAX_CHUNK: usize = 1024;

/// Whether the filter (if any) accepts a name from the index.
fn accepted(filter: Option<&NameFilter>, raw: &str) -> Result<bool, StoreError> {
    match filter {
        None => Ok(true),
        Some(f) => Ok(f(&indexed(raw)?)),
    }
}

/// A name from the index (it was a [`SecretName`] when it went in).
fn indexed(name: &str) -> Result<SecretName, StoreError> {
    SecretName::parse(name).map_err(|_| StoreError::Malformed("a name in the name index"))
}

impl<B: Backend + ?Sized> EncryptedStore<B> {
    /// Up to `max` live names of `ns` at or after `from` with `prefix`, building the index
    /// first if no one has.
    fn chunk(
        &self,
        ns: &OpenNamespace,
        from: Bound<&str>,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<Box<str>>, StoreError> {
        ns.names.chunk(from, prefix, max, || {
            scan(&*self.backend, ns, &self.closing, self.scan_page)
        })
    }

    /// A page of live names: after the cursor, with the prefix, accepted by the filter.
    pub(super) fn names_page(
        &self,
        ns: &OpenNamespace,
        query: &ListQuery,
    ) -> Result<Page<SecretName>, StoreError> {
        let limit = query.limit.max(1);
        let prefix = query.prefix.as_deref().unwrap_or("");
        let mut from = query.after.as_ref().map(|a| a.as_str().to_owned());
        let mut items: Vec<SecretName> = Vec::new();
        let mut grow = 1usize;
        loop {
            // One more than the page needs: an accepted name past the page means `next`.
            let want = (limit - items.len())
                .saturating_add(1)
                .saturating_mul(grow)
                .clamp(1, MAX_CHUNK);
            let bound = from.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let chunk = self.chunk(ns, bound, prefix, want)?;
            for raw in &chunk {
                let name = indexed(raw)?;
                if query.filter.as_ref().is_none_or(|f| f(&name)) {
                    if items.len() == limit {
                        let next = items.last().cloned();
                        return Ok(Page { items, next });
                    }
                    items.push(name);
                }
            }
            match chunk.last() {
                Some(last) if chunk.len() == want => from = Some(last.to_string()),
                _ => return Ok(Page { items, next: None }),
            }
            grow = grow.saturating_mul(2);
        }
    }

    /// A page of summaries: the names' page, then each name's row (read by its name hash).
    /// A name deleted between the two is left out.
    pub(super) fn summary_page(
        &self,
        namespace: &Namespace,
        query: &ListQuery,
    ) -> Result<Page<SecretSummary>, StoreError> {
        let ns = self.namespace(namespace)?;
        let page = self.names_page(&ns, query)?;
        let mut items = Vec::with_capacity(page.items.len());
        for name in page.items {
            let Some((row, _)) = self.read(&ns, &name, None)? else {
                continue;
            };
            let meta = ns.meta_of(&row)?;
            items.push(SecretSummary {
                name,
                index: row.index,
                current: row.current,
                kind: row.kind,
                created: row.created,
                updated: row.updated,
                description: meta.description,
                generated: meta.generated.is_some(),
            });
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// The entries one level under the folder `prefix` (see [`crate::SecretStore::keys`]).
    ///
    /// Once a subfolder is shown, its whole subtree is skipped with one seek: names use the
    /// bytes `[A-Za-z0-9._/-]` and `/` (0x2F) sorts just below `0` (0x30), so every name
    /// under `dir/` sorts before `dir0`, the first name past the subtree.
    pub(super) fn folder(
        &self,
        ns: &OpenNamespace,
        prefix: &str,
        filter: Option<&NameFilter>,
    ) -> Result<Vec<String>, StoreError> {
        let folder = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        let mut keys: Vec<String> = Vec::new();
        // Where the next chunk starts, inclusive (a seek) or exclusive (the last name seen).
        let mut from: Option<(String, bool)> = None;
        let mut size = MIN_CHUNK;
        loop {
            let bound = match &from {
                None => Bound::Unbounded,
                Some((at, true)) => Bound::Included(at.as_str()),
                Some((at, false)) => Bound::Excluded(at.as_str()),
            };
            let chunk = self.chunk(ns, bound, &folder, size)?;
            let mut seek: Option<String> = None;
            for raw in &chunk {
                if seek.as_deref().is_some_and(|s| **raw < *s) {
                    continue;
                }
                seek = None;
                let rest = &raw[folder.len()..];
                let (key, end) = match rest.find('/') {
                    Some(slash) => (&rest[..=slash], Some(slash)),
                    None => (rest, None),
                };
                if !accepted(filter, raw)? {
                    continue;
                }
                if keys.last().is_none_or(|last| last != key) {
                    keys.push(key.to_owned());
                }
                if let Some(slash) = end {
                    seek = Some(format!("{folder}{}0", &rest[..slash]));
                }
            }
            if chunk.len() < size {
                return Ok(keys);
            }
            match seek {
                Some(past) => {
                    from = Some((past, true));
                    size = MIN_CHUNK;
                }
                None => {
                    // The chunk was full, so it has a last name.
                    let last = chunk.last().map(|l| l.to_string()).unwrap_or_default();
                    from = Some((last, false));
                    size = (size * 2).min(MAX_CHUNK);
                }
            }
        }
    }

    /// A page of revoked secrets (see [`crate::SecretStore::revoked`]). Revoked rows are not
    /// in the name index: every revoked row of the namespace is read and its name decrypted,
    /// and metadata and history are read for the page's rows only.
    pub(super) fn revoked_page(
        &self,
        ns: &OpenNamespace,
        query: &ListQuery,
    ) -> Result<Page<SecretMeta>, StoreError> {
        let mut named: Vec<(SecretName, SecretRow)> = Vec::new();
        for row in self.backend.revoked(&ns.id)? {
            let name = ns.name_of(&row)?;
            if query.accepts(&name) {
                named.push((name, row));
            }
        }
        named.sort_by(|a, b| (&a.0, a.1.revoked).cmp(&(&b.0, b.1.revoked)));
        let limit = query.limit.max(1);
        let mut names = 0;
        let mut end = named.len();
        for (i, (name, _)) in named.iter().enumerate() {
            if i == 0 || named[i - 1].0 != *name {
                if names == limit {
                    end = i;
                    break;
                }
                names += 1;
            }
        }
        // `end` is where the (limit + 1)-th name starts, so at least one name comes before.
        let next = (end < named.len()).then(|| named[end - 1].0.clone());
        named.truncate(end);
        let items = named
            .iter()
            .map(|(_, row)| self.meta(ns, row))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }
}
