//! Test-only fault hooks that kill the process at chosen points.

/// Test hooks that kill the process at chosen points (crash-safety tests).
/// Set by `WEIR_FAULT_KILL_AFTER_PAGES`, `WEIR_FAULT_KILL_AFTER_DELIVERIES`
/// and `WEIR_FAULT_KILL_BEFORE_RECORDING` (the Nth write batch to come
/// back from a connector, before its outcome is recorded).
pub(super) struct Faults {
    pub(super) pages_left: Option<u64>,
    pub(super) deliveries_left: Option<u64>,
    pub(super) writes_left: Option<u64>,
}

impl Faults {
    pub(super) fn from_env() -> Faults {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Faults {
            pages_left: var("WEIR_FAULT_KILL_AFTER_PAGES"),
            deliveries_left: var("WEIR_FAULT_KILL_AFTER_DELIVERIES"),
            writes_left: var("WEIR_FAULT_KILL_BEFORE_RECORDING"),
        }
    }

    pub(super) fn count(left: &mut Option<u64>, n: u64) {
        if let Some(l) = left {
            *l = l.saturating_sub(n);
            if *l == 0 {
                kill_self();
            }
        }
    }
}

/// Ends the process the way `kill -9` does: no destructor, no flush.
pub(super) fn kill_self() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort();
}
