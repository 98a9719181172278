//! Gate 7 for lists: one store call answers one page (or, for Vault's LIST, every key one
//! level below a folder), with the policy applied to each name inside the store's scan.

use super::gates::ListWork;
use super::state::{Gated, Service, blocking, stored};
use crate::Reply;

impl Service {
    pub(super) async fn list(&self, work: ListWork) -> Gated<Reply> {
        let ListWork {
            store,
            namespace,
            query,
            detail,
            revoked,
            folders,
            prefix,
        } = work;
        blocking(move || {
            Ok(if folders {
                Reply::Keys(store.keys(&namespace, &prefix, query.filter.as_ref())?)
            } else if revoked {
                Reply::Revoked(store.revoked(&namespace, &query)?)
            } else if detail {
                Reply::Summaries(store.summaries(&namespace, &query)?)
            } else {
                Reply::Names(store.list(&namespace, &query)?)
            })
        })
        .await
        .map_err(stored)
    }
}
