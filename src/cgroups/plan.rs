//! Cgroup file writes as data, and the conversions shared by the v1 and v2 plan builders.
//!
//! The builders in plan_v1.rs and plan_v2.rs are pure: they take linux.resources and a few facts
//! probed from the host (which files exist, the current memory limit) and return the writes in
//! the order they must happen. Manager::apply_resources probes, builds, and writes.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// One write into the container's cgroup directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupWrite {
    /// The controller the file belongs to. On v1 it picks the hierarchy (its directory is the
    /// container's directory in the hierarchy carrying this controller); on v2 every file lives in
    /// the one directory and this only explains a missing controller. Named "cgroup" for core files.
    pub controller: String,
    /// File name inside the container's cgroup directory ("memory.max").
    pub file: String,
    pub value: String,
    /// Skip silently when the file does not exist (used where runc does: v2 memory.swap.max set to
    /// "max" or "0" on a kernel without swap accounting asks for nothing that could be missing).
    pub optional: bool,
}

impl CgroupWrite {
    pub fn new(controller: &str, file: &str, value: impl ToString) -> Self {
        CgroupWrite {
            controller: controller.to_string(),
            file: file.to_string(),
            value: value.to_string(),
            optional: false,
        }
    }

    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000], with the curve runc (>= 1.3.2,
/// opencontainers/cgroups) and crun (>= 1.23) adopted: a quadratic in log2(shares) that maps the
/// v1 default 1024 onto the v2 default 100. The older linear formula mapped 1024 to 39, which
/// made every container lose CPU to system services (kubernetes#131216).
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
        }
    }
}

/// blkio.weight [10, 1000] to io.weight [1, 10000], runc's linear map.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// OCI memory.swap is memory+swap (v1 semantics); v2's memory.swap.max is swap alone.
/// Returns the v2 value with runc's conventions: -1 is "max", 0 is "leave alone".
pub fn memory_swap_to_v2(swap: i64, limit: i64) -> Result<i64, CgroupError> {
    let invalid = |reason| CgroupError::MemorySwap { limit, swap, reason };
    // v1 compatibility: unlimited memory with no swap given means unlimited swap too.
    if limit == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if limit == 0 || limit == -1 {
        return Err(invalid("a swap limit needs a memory limit"));
    }
    if limit < 0 {
        return Err(invalid("the memory limit is negative"));
    }
    if swap < limit {
        return Err(invalid("memory+swap must be >= memory"));
    }
    Ok(swap - limit)
}

/// runc's numToStr: 0 is "not set", -1 is "max".
pub fn limit_str(value: i64) -> Option<String> {
    match value {
        0 => None,
        -1 => Some("max".to_string()),
        v => Some(v.to_string()),
    }
}

/// Device rules runc appends to every container's list, so that the devices the runtime creates
/// in /dev (null, zero, full, random, urandom, tty, ptmx, pts) stay usable, plus mknod of anything
/// and /dev/net/tun. Appended after the config's rules, exactly as runc does, because engines
/// rely on it even though the runtime-spec does not ask for it.
pub fn default_device_rules() -> Vec<String> {
    [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:8 rwm",
        "c 1:7 rwm",
        "c 5:0 rwm",
        "c 1:5 rwm",
        "c 1:9 rwm",
        "c 136:* rwm",
        "c 5:2 rwm",
        "c 10:200 rwm",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Format an OCI device rule the way devices.allow/devices.deny read it: "c 1:3 rwm".
pub fn device_rule(rule: &LinuxDeviceCgroup) -> Result<String, CgroupError> {
    let typ = rule.typ().unwrap_or(LinuxDeviceType::A);
    let num = |n: Option<i64>| match n {
        None | Some(-1) => Ok("*".to_string()),
        Some(n) if n >= 0 => Ok(n.to_string()),
        Some(_) => Err(CgroupError::DeviceRule {
            rule: format!("{rule:?}"),
            reason: "negative major/minor (only -1 means any)",
        }),
    };
    let access = rule.access().as_deref().unwrap_or("rwm");
    if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(CgroupError::DeviceRule {
            rule: format!("{rule:?}"),
            reason: "access must be a non-empty combination of r, w and m",
        });
    }
    let t = match typ {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        // 'u' (unbuffered char) is a character device to the kernel; 'p' (FIFO) needs no cgroup
        // permission, and the kernel refuses it, so it is mapped to 'c' as runc does for 'u'.
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => {
            return Err(CgroupError::DeviceRule {
                rule: format!("{rule:?}"),
                reason: "FIFOs ('p') are not subject to the devices cgroup",
            })
        }
    };
    Ok(format!("{t} {}:{} {access}", num(rule.major())?, num(rule.minor())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    #[test]
    fn shares_to_weight_new_formula() {
        assert_eq!(cpu_shares_to_weight(0), 0);
        assert_eq!(cpu_shares_to_weight(1), 1);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 100, "v1 default maps to v2 default");
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(1 << 20), 10_000);
        // Values from the formula as Go computes it (opencontainers/cgroups).
        assert_eq!(cpu_shares_to_weight(512), 59);
        assert_eq!(cpu_shares_to_weight(2048), 174);
        assert_eq!(cpu_shares_to_weight(100), 17);
        assert_eq!(cpu_shares_to_weight(3), 2);
        assert_eq!(cpu_shares_to_weight(50_000), 2402);
        // Monotonic over the whole range.
        let mut prev = 0;
        for s in (2..=262_144).step_by(97) {
            let w = cpu_shares_to_weight(s);
            assert!(w >= prev && (1..=10_000).contains(&w), "shares {s}");
            prev = w;
        }
    }

    #[test]
    fn blkio_to_io_weight() {
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(5), 1, "below range clamps, no underflow");
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(memory_swap_to_v2(0, -1).unwrap(), -1);
        assert_eq!(memory_swap_to_v2(0, 100).unwrap(), 0);
        assert_eq!(memory_swap_to_v2(-1, 100).unwrap(), -1);
        assert_eq!(memory_swap_to_v2(300, 100).unwrap(), 200);
        assert_eq!(memory_swap_to_v2(100, 100).unwrap(), 0);
        for (swap, limit) in [(100, 0), (100, -1), (100, -5), (50, 100)] {
            let err = memory_swap_to_v2(swap, limit).unwrap_err();
            assert!(matches!(err, CgroupError::MemorySwap { .. }), "{swap} {limit}");
        }
    }

    #[test]
    fn device_rules_format() {
        let rule = |t, maj, min, acc: Option<&str>| {
            let mut b = LinuxDeviceCgroupBuilder::default().allow(true);
            if let Some(t) = t {
                b = b.typ(t);
            }
            if let Some(m) = maj {
                b = b.major(m);
            }
            if let Some(m) = min {
                b = b.minor(m);
            }
            if let Some(a) = acc {
                b = b.access(a);
            }
            device_rule(&b.build().unwrap())
        };
        assert_eq!(rule(None, None, None, None).unwrap(), "a *:* rwm");
        let c = Some(LinuxDeviceType::C);
        assert_eq!(rule(c, Some(1), Some(3), Some("rw")).unwrap(), "c 1:3 rw");
        assert_eq!(rule(c, Some(136), None, Some("rwm")).unwrap(), "c 136:* rwm");
        assert_eq!(rule(c, Some(136), Some(-1), Some("r")).unwrap(), "c 136:* r");
        let b = Some(LinuxDeviceType::B);
        assert_eq!(rule(b, Some(8), Some(0), Some("m")).unwrap(), "b 8:0 m");
        let u = Some(LinuxDeviceType::U);
        assert_eq!(rule(u, Some(4), Some(1), None).unwrap(), "c 4:1 rwm");
        assert!(rule(c, Some(1), Some(3), Some("rx")).is_err());
        assert!(rule(c, Some(1), Some(3), Some("")).is_err());
        assert!(rule(c, Some(-2), Some(3), None).is_err());
        assert!(rule(Some(LinuxDeviceType::P), None, None, None).is_err());
    }
}
