//! Process hardening: no core dumps, no ptrace attachment (DESIGN.md, Cache and memory).

/// Turns off core dumps (RLIMIT_CORE 0) and marks the process undumpable, which also stops
/// unprivileged processes of the same user from attaching with ptrace or reading its memory
/// through /proc. Call first thing in every coffer process that handles secrets.
pub fn harden_process() -> Result<(), nix::Error> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)?;
    nix::sys::prctl::set_dumpable(false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn leaves_the_process_undumpable() {
        super::harden_process().unwrap();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!((soft, hard), (0, 0));
    }
}
