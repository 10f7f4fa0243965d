//! The 256 MiB memory verifier (issue 7): `integration/survival/mem256.c` fills 256 MiB with a
//! position-dependent pattern (with present zero pages and never-touched holes), plus read-only,
//! PROT_NONE and COWed private-file regions, and checks every byte after checkpoint (kill) and
//! restore, as the container's init and deep in its tree.

use amber_integration::survival::Opts;
use amber_integration::survival_tests;
use std::time::Duration;

fn opts() -> Opts<'static> {
    Opts {
        // 256 MiB to dirty before, and to verify after, on a loaded 2-core machine
        ready_timeout: Duration::from_secs(60),
        result_timeout: Duration::from_secs(60),
        ..Opts::default()
    }
}

survival_tests! {
    mem256_as_init: "mem256", Init, opts();
    mem256_deep: "mem256", Deep, opts();
}
