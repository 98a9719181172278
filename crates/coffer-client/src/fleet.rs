//! The fleet on the socket (`fleet`): join tokens, nodes, tags, assignment rules and
//! bundles. Each verb answers JSON under `fleet` (docs/protocol.md, `fleet`); a join token
//! and a bundle's key are in it once, when they are made.

use crate::ClientError;
use crate::request::Client;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct FleetReply {
    fleet: serde_json::Value,
}

impl Client {
    /// Runs the fleet verb `verb` with `fields` (a JSON object of the verb's fields);
    /// answers its JSON (`null` for a verb that answers nothing).
    pub fn fleet(
        &self,
        verb: &str,
        fields: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let mut b = self.request("fleet").field("verb", verb);
        if let Some(map) = fields.as_object() {
            for (k, v) in map {
                b = b.json(k, v);
            }
        }
        let reply: FleetReply = self.call_as(&b.finish())?;
        Ok(reply.fleet)
    }
}
