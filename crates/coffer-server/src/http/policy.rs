//! ACL policies: `sys/policies/acl/:name` and the older `sys/policy/:name` (read, write,
//! delete), `sys/policies/acl` and `sys/policy` (list). A policy is written as Vault's HCL
//! (`{"policy": "path \"secret/data/*\" { capabilities = [\"read\"] }"}`) or as coffer's own
//! JSON or TOML form (`{"rules": [...]}`); which one is told by its text. Each route turns
//! its request into one core operation; the core checks and keeps the text.

use axum::extract::{Path, State};
use axum::http::Method;
use coffer_core::{Operation, Reply};
use coffer_types::reply::PolicyText;
use serde::Deserialize;

use super::envelope;
use super::error::{ApiError, ApiResult, is_missing};
use super::extract::{Body, Query, Who, lists, reads, writes};
use super::state::Shared;

/// `sys/policies/acl` and `sys/policy` (LIST or GET): the policies' names.
pub(crate) async fn policy_list(
    State(state): State<Shared>,
    Who(caller): Who,
    method: Method,
    query: Query,
) -> ApiResult {
    if !(lists(&method, &query) || reads(&method, &query)) {
        return Err(ApiError::unsupported());
    }
    let Reply::Policies(listing) = state.service.call(caller, Operation::PolicyList).await? else {
        return Err(ApiError::unexpected());
    };
    let mut names: Vec<&str> = listing.policies.iter().map(|p| p.name.as_str()).collect();
    names.extend(["root", "default"]);
    names.sort_unstable();
    names.dedup();
    Ok(envelope::data(
        serde_json::json!({ "keys": names, "policies": names }),
    ))
}

#[derive(Deserialize)]
struct PolicyIn {
    /// Vault's field (`sys/policies/acl`).
    policy: Option<String>,
    /// The older `sys/policy` field.
    rules: Option<String>,
}

/// The text a policy shows: HCL as written, or coffer's rules as JSON.
pub(crate) fn shown(text: &PolicyText) -> String {
    match &text.hcl {
        Some(hcl) => hcl.clone(),
        None => serde_json::to_string_pretty(text).unwrap_or_default(),
    }
}

/// Which form `text` is: coffer's JSON or TOML (`rules = [...]`), else Vault's HCL.
pub(crate) fn policy_text(text: String) -> PolicyText {
    if let Ok(t) = serde_json::from_str::<PolicyText>(&text) {
        return t;
    }
    if let Ok(t) = toml::from_str::<PolicyText>(&text)
        && (!t.rules.is_empty() || t.hcl.is_some())
    {
        return t;
    }
    PolicyText {
        rules: Vec::new(),
        hcl: Some(text),
    }
}

/// `sys/policies/acl/<name>` and `sys/policy/<name>`: read, write, delete one policy.
pub(crate) async fn policy(
    State(state): State<Shared>,
    Who(caller): Who,
    method: Method,
    query: Query,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    if reads(&method, &query) {
        return match state
            .service
            .call(caller, Operation::PolicyGet { name })
            .await
        {
            Ok(Reply::Policy(view)) => {
                let text = shown(&view.rules);
                Ok(envelope::data(serde_json::json!({
                    "name": view.name,
                    "policy": text,
                    "rules": text,
                    "source": view.source,
                })))
            }
            Ok(_) => Err(ApiError::unexpected()),
            Err(r) if is_missing(&r) => Err(ApiError::Missing),
            Err(r) => Err(r.into()),
        };
    }
    if method == Method::DELETE {
        state
            .service
            .call(caller, Operation::PolicyDelete { name })
            .await?;
        return Ok(envelope::no_content());
    }
    if !writes(&method) {
        return Err(ApiError::unsupported());
    }
    let input: PolicyIn = body.json()?;
    let Some(text) = input.policy.or(input.rules) else {
        return Err(ApiError::bad(
            "the body needs \"policy\": the policy's HCL (path \"secret/data/*\" { capabilities = \
             [\"read\"] }) or coffer's JSON form ({\"rules\":[...]})"
                .to_owned(),
        ));
    };
    let rules = policy_text(text);
    state
        .service
        .call(caller, Operation::PolicyPut { name, rules })
        .await?;
    Ok(envelope::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_is_told_by_the_text() {
        let json = policy_text(r#"{"rules":[{"path":"app/*","capabilities":["read"]}]}"#.into());
        assert_eq!((json.rules.len(), json.hcl), (1, None));
        let toml = policy_text("rules = [{ path = \"app/*\", capabilities = [\"read\"] }]".into());
        assert_eq!((toml.rules.len(), toml.hcl), (1, None));
        let hcl = "path \"secret/data/*\" {\n  capabilities = [\"read\"]\n}\n";
        let h = policy_text(hcl.into());
        assert_eq!(h.hcl.as_deref(), Some(hcl));
        assert_eq!(shown(&h), hcl);
    }
}
