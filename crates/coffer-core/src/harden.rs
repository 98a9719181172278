//! Process hardening: no core dumps, no ptrace attachment (DESIGN.md, Cache and memory).

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The core-dump limit a process had before [`harden_process`], so a program it runs
/// (`coffer run`) can get it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreLimit {
    soft: u64,
    hard: u64,
}

impl CoreLimit {
    /// Puts the limit back (before `exec`ing another program, which should not inherit it).
    pub fn restore(self) -> Result<(), nix::Error> {
        setrlimit(Resource::RLIMIT_CORE, self.soft, self.hard)
    }
}

/// Turns off core dumps (the soft RLIMIT_CORE, which the kernel obeys, set to 0) and marks
/// the process undumpable, which on its own also prevents core dumps and stops unprivileged
/// processes of the same user from attaching with ptrace or reading its memory through
/// /proc. Call first thing in every coffer process that handles secrets. The hard limit is
/// left alone so that the limit answered here can be restored before `exec`ing another
/// program (`exec` also clears the undumpable mark).
pub fn harden_process() -> Result<CoreLimit, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_CORE)?;
    setrlimit(Resource::RLIMIT_CORE, 0, hard)?;
    nix::sys::prctl::set_dumpable(false)?;
    Ok(CoreLimit { soft, hard })
}

#[cfg(test)]
mod tests {
    #[test]
    fn leaves_the_process_undumpable() {
        use nix::sys::resource::{Resource, getrlimit};
        let before = getrlimit(Resource::RLIMIT_CORE).unwrap();
        let saved = super::harden_process().unwrap();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
        assert_eq!(getrlimit(Resource::RLIMIT_CORE).unwrap(), (0, before.1));
        saved.restore().unwrap();
        assert_eq!(getrlimit(Resource::RLIMIT_CORE).unwrap(), before);
        super::harden_process().unwrap();
    }
}
