//! A missing secret named: the wire's `no such secret` (fixed by the device protocol) said
//! again with the name and namespace the operator gave, and where to look.

use coffer_client::ClientError;
use coffer_types::{ErrorCode, Namespace};

/// The daemon's message for a secret that is not there.
const NO_SUCH_SECRET: &str = "no such secret";

/// Maps a `not_found` for a secret into one naming it, its namespace and the next step; any
/// other error passes unchanged (same code, same exit status).
pub fn named<'a>(
    namespace: Option<&'a str>,
    name: &'a str,
) -> impl FnOnce(ClientError) -> ClientError + 'a {
    move |e| match e {
        ClientError::Refused {
            code: ErrorCode::NotFound,
            message,
            rc,
        } if message == NO_SUCH_SECRET => {
            let ns = namespace.unwrap_or(Namespace::DEFAULT);
            ClientError::Refused {
                code: ErrorCode::NotFound,
                message: format!(
                    "no such secret \"{name}\" in namespace \"{ns}\": see what is there with \
                     `coffer secrets list -n {ns}` (a revoked one: --revoked)"
                ),
                rc,
            }
        }
        other => other,
    }
}
