//! The conformance suite every backend runs, written once (CONVENTIONS.md, Backends).
//!
//! A backend crate invokes [`conformance_suite!`](crate::conformance_suite) with an
//! expression that makes a fresh, empty backend and a guard that keeps its resources (a
//! temporary directory, a TPM simulator) alive; the macro expands to one `#[test]` per case.
//! Every case drives the data model through [`EncryptedStore`](crate::EncryptedStore), so
//! the cryptography is
//! exercised over each backend too, and a few cases use the raw
//! [`Backend`](crate::Backend) as an attacker
//! with write access to the rows would.
//!
//! The cases live in three files by subject: `basics` (reads, writes, deletes, isolation,
//! concurrency), `lifecycle` (versions, metadata, kinds, revocation, derived writes, extreme
//! inputs) and `listing` (pages, filters, folders, revoked secrets, the name index under
//! races); all are exported here.
//!
//! This module is test code compiled into the library (behind the `conformance` feature) so
//! other crates' backends can run it: each `expect` in it is an assertion that the backend
//! did what the case needs, and a panic is the case failing, as `assert!` would.

mod basics;
mod events;
mod lifecycle;
mod listing;
mod locking;
mod rotation;
mod snapshot;
mod support;

pub use basics::*;
pub use events::*;
pub use lifecycle::*;
pub use listing::*;
pub use locking::*;
pub use rotation::*;
pub use snapshot::*;
pub use support::Made;

/// Expands to the whole suite for the backend `$make` produces (an expression of type
/// `fn() -> Made<B>` or a closure): one `#[test]` per case. `conformance_suite!(@each
/// $make)` expands instead to an array of `(name, case)` pairs, for a backend whose cases
/// share one costly resource in one test (a PostgreSQL server).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite! { @list test_cases $make }
    };
    (@each $make:expr) => {
        $crate::conformance_suite! { @list each_case $make }
    };
    (@list $how:ident $make:expr) => {
        $crate::conformance_suite! { @ $how $make;
            set_then_get,
            overwrite_creates_a_new_version,
            missing_names_are_not_found,
            delete_frees_the_name,
            list_returns_names_only,
            cleanup_leaves_the_list_empty,
            moved_ciphertext_fails_to_decrypt,
            concurrent_writers,
            namespaces_are_isolated,
            secret_count_follows_the_live_secrets,
            index_is_stable_and_unique,
            versions_record_time_and_actor,
            metadata_holds_no_value,
            reopening_with_the_master_key_reads_everything,
            kinds_are_checked_and_kept,
            write_modes_create_and_update,
            max_versions_keeps_the_newest,
            describe_writes_no_version,
            revoke_keeps_history_and_frees_the_name,
            destroy_erases_ciphertexts_for_good,
            list_pages_by_prefix_and_cursor,
            check_and_set_is_decided_in_the_transaction,
            soft_deletion_and_custom_metadata_live_in_the_metadata,
            delete_answers_the_removed_id,
            list_filter_fills_pages,
            keys_list_one_level,
            revoked_pages_by_prefix_and_cursor,
            index_stays_exact_under_concurrent_changes,
            name_pages_cover_every_live_secret,
            derived_writes_read_and_write_in_one_transaction,
            derived_writes_refuse_what_get_refuses,
            custom_metadata_merges_in_the_transaction,
            extreme_values_are_refused_or_handled,
            every_change_is_numbered_in_order,
            pruned_events_ask_for_a_resync,
            key_rotation_reencrypts_every_version,
            an_interrupted_key_rotation_resumes_at_open,
            rewrap_master_moves_every_key_under_the_new_master,
            namespaces_lock_and_unlock,
            key_wraps_change_only_over_what_was_read,
            a_snapshot_imports_into_an_empty_store,
            an_import_into_a_store_with_data_is_refused
        }
    };
    (@test_cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::$case(&$make);
            }
        )*
    };
    (@each_case $make:expr; $($case:ident),* $(,)?) => {
        [$(
            (
                stringify!($case),
                Box::new(|| $crate::conformance::$case(&$make)) as Box<dyn Fn()>,
            )
        ),*]
    };
}
