//! What the service's tests share: sending a request as a listener does.
#![allow(dead_code)]

use std::sync::Arc;

use coffer_core::{Caller, Identity, Operation, Refusal, Reply, Service};

/// A request from `who`, as a listener sends it.
pub trait Handle {
    /// Calls the service as `who`.
    fn handle(
        &self,
        who: &Identity,
        op: Operation,
    ) -> impl std::future::Future<Output = Result<Reply, Refusal>>;
}

impl Handle for Arc<Service> {
    async fn handle(&self, who: &Identity, op: Operation) -> Result<Reply, Refusal> {
        self.call(Caller::peer(who.clone()), op).await
    }
}
