//! Which rotation hooks the daemon will run: an executable file that only root or the
//! daemon's own user can change, in directories only they can change (a world-writable
//! directory counts only with its sticky bit, as `/tmp`). Checked when a policy names the
//! hook and again before every run, so a file swapped or loosened later is not run.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The one refusal, whatever is wrong: it never says whether a path exists.
pub const UNTRUSTED: &str = "rotate_command must be an absolute path to an existing executable \
     file that only root or the daemon's user may change, in directories only they may change";

/// Whether `command` names a hook the daemon may run.
pub fn trusted(command: &str) -> bool {
    let path = Path::new(command);
    if !path.is_absolute() {
        return false;
    }
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    let daemon = nix::unistd::geteuid().as_raw();
    let owned = |uid: u32| uid == 0 || uid == daemon;
    let Ok(file) = std::fs::metadata(&real) else {
        return false;
    };
    let mode = file.permissions().mode();
    if !file.is_file() || mode & 0o111 == 0 || mode & 0o022 != 0 || !owned(file.uid()) {
        return false;
    }
    real.ancestors().skip(1).all(|dir| {
        std::fs::metadata(dir).is_ok_and(|m| {
            let mode = m.permissions().mode();
            m.is_dir() && owned(m.uid()) && (mode & 0o022 == 0 || mode & 0o1000 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hooks_others_cannot_change_are_trusted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let hook = dir.path().join("hook");
        std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
        let text = hook.to_str().unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(trusted(text));
        assert!(!trusted("relative/hook"));
        assert!(!trusted("/nonexistent/hook"));
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!trusted(text), "not executable");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o757)).unwrap();
        assert!(!trusted(text), "world-writable");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!trusted(text), "in a directory anyone may change");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(trusted(text), "a sticky directory, as /tmp");
    }
}
