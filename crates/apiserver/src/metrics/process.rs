//! The `process_*` family kube-apiserver exports through Go's client (its process collector),
//! with that collector's names and help texts, read from `/proc` at scrape time. Linux only: a
//! value that cannot be read is left out of the scrape.

use std::collections::HashMap;
use std::fs;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

/// USER_HZ, the unit of the CPU times in `/proc`: 100 in the ABI of every Linux architecture
/// (what `sysconf(_SC_CLK_TCK)` answers). Asking would take libc and unsafe code.
const USER_HZ: f64 = 100.0;

struct Spec {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
}

const SPECS: [Spec; 7] = [
    Spec {
        name: "process_cpu_seconds_total",
        help: "Total user and system CPU time spent in seconds.",
        kind: MetricType::COUNTER,
    },
    Spec {
        name: "process_open_fds",
        help: "Number of open file descriptors.",
        kind: MetricType::GAUGE,
    },
    Spec {
        name: "process_max_fds",
        help: "Maximum number of open file descriptors.",
        kind: MetricType::GAUGE,
    },
    Spec {
        name: "process_virtual_memory_bytes",
        help: "Virtual memory size in bytes.",
        kind: MetricType::GAUGE,
    },
    Spec {
        name: "process_virtual_memory_max_bytes",
        help: "Maximum amount of virtual memory available in bytes.",
        kind: MetricType::GAUGE,
    },
    Spec {
        name: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        kind: MetricType::GAUGE,
    },
    Spec {
        name: "process_start_time_seconds",
        help: "Start time of the process since unix epoch in seconds.",
        kind: MetricType::GAUGE,
    },
];

/// Reads this process's figures on every scrape.
pub struct ProcessCollector {
    descs: Vec<Desc>,
}

impl ProcessCollector {
    pub fn new() -> prometheus::Result<ProcessCollector> {
        let descs = SPECS
            .iter()
            .map(|s| Desc::new(s.name.into(), s.help.into(), Vec::new(), HashMap::new()))
            .collect::<prometheus::Result<Vec<Desc>>>()?;
        Ok(ProcessCollector { descs })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let readings = Readings::read();
        SPECS
            .iter()
            .zip(readings.in_spec_order())
            .filter_map(|(spec, value)| value.map(|v| family(spec, v)))
            .collect()
    }
}

fn family(spec: &Spec, value: f64) -> MetricFamily {
    let mut metric = proto::Metric::default();
    if spec.kind == MetricType::COUNTER {
        let mut counter = proto::Counter::default();
        counter.set_value(value);
        metric.set_counter(counter);
    } else {
        let mut gauge = proto::Gauge::default();
        gauge.set_value(value);
        metric.set_gauge(gauge);
    }
    let mut family = MetricFamily::default();
    family.set_name(spec.name.to_string());
    family.set_help(spec.help.to_string());
    family.set_field_type(spec.kind);
    family.set_metric(vec![metric]);
    family
}

/// One scrape's figures; `None` where `/proc` could not say.
#[derive(Debug, Default, PartialEq)]
struct Readings {
    cpu_seconds: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    virtual_bytes: Option<f64>,
    virtual_max_bytes: Option<f64>,
    resident_bytes: Option<f64>,
    start_time: Option<f64>,
}

impl Readings {
    fn read() -> Readings {
        let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let boot = fs::read_to_string("/proc/stat").unwrap_or_default();
        let mut readings = Readings::parse(&stat, &limits, &status, &boot);
        readings.open_fds = fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as f64);
        readings
    }

    /// Everything but the open descriptors, from the text of `/proc/self/stat`,
    /// `/proc/self/limits`, `/proc/self/status` and `/proc/stat`.
    fn parse(stat: &str, limits: &str, status: &str, boot: &str) -> Readings {
        let fields = stat_fields(stat);
        let field = |n: usize| fields.as_deref().and_then(|f| stat_field(f, n));
        let cpu_ticks = field(14).zip(field(15)).map(|(user, system)| user + system);
        let booted = boot_time(boot);
        Readings {
            cpu_seconds: cpu_ticks.map(|t| t / USER_HZ),
            open_fds: None,
            max_fds: soft_limit(limits, "Max open files"),
            virtual_bytes: field(23),
            virtual_max_bytes: soft_limit(limits, "Max address space"),
            resident_bytes: status_kib(status, "VmRSS:").map(|kib| kib * 1024.0),
            start_time: field(22)
                .zip(booted)
                .map(|(ticks, booted)| ticks / USER_HZ + booted),
        }
    }

    /// The values in the order of [`SPECS`].
    fn in_spec_order(&self) -> [Option<f64>; 7] {
        [
            self.cpu_seconds,
            self.open_fds,
            self.max_fds,
            self.virtual_bytes,
            self.virtual_max_bytes,
            self.resident_bytes,
            self.start_time,
        ]
    }
}

/// The fields of `/proc/<pid>/stat` after the command name, which may itself hold spaces and
/// parentheses: the list starts at field 3, `state`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// Field `number` (1-based, as proc(5) numbers them) of the list [`stat_fields`] returns.
fn stat_field(fields: &[&str], number: usize) -> Option<f64> {
    let value = fields.get(number.checked_sub(3)?)?;
    value.parse::<u64>().ok().map(|v| v as f64)
}

/// The soft limit of a row of `/proc/<pid>/limits`; `unlimited` reads as the largest u64, as
/// Go's procfs reads it.
fn soft_limit(limits: &str, row: &str) -> Option<f64> {
    let soft = limits
        .lines()
        .find_map(|line| line.strip_prefix(row))?
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX as f64);
    }
    soft.parse::<u64>().ok().map(|v| v as f64)
}

/// A `kB` row of `/proc/<pid>/status`, e.g. `VmRSS:      10432 kB`.
fn status_kib(status: &str, row: &str) -> Option<f64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix(row))?
        .split_whitespace()
        .next()?;
    value.parse::<u64>().ok().map(|v| v as f64)
}

/// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<f64> {
    let value = proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?;
    value.trim().parse::<u64>().ok().map(|v| v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (image apiserver) S 1 4242 4242 0 -1 4194560 2500 0 3 0 \
        250 120 0 0 20 0 9 0 12345 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 \
        0 17 1 0 0 0 0 0";
    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
        Max cpu time              unlimited            unlimited            seconds   \n\
        Max open files            1024                 1048576              files     \n\
        Max address space         unlimited            unlimited            bytes     \n";
    const STATUS: &str = "Name:\timage-apiserver\nVmSize:\t  964504 kB\nVmRSS:\t   10432 kB\n";
    const BOOT: &str = "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 9\n";

    #[test]
    fn parses_procs_text() {
        let r = Readings::parse(STAT, LIMITS, STATUS, BOOT);
        assert_eq!(r.cpu_seconds, Some(3.7));
        assert_eq!(r.virtual_bytes, Some(987_654_321.0));
        assert_eq!(r.resident_bytes, Some(10432.0 * 1024.0));
        assert_eq!(r.max_fds, Some(1024.0));
        assert_eq!(r.virtual_max_bytes, Some(u64::MAX as f64));
        assert_eq!(r.start_time, Some(1_700_000_000.0 + 123.45));
    }

    #[test]
    fn unreadable_figures_are_left_out() {
        let r = Readings::parse("garbage", "", "", "");
        assert_eq!(r, Readings::default());
        assert!(r.in_spec_order().iter().all(Option::is_none));
    }

    #[test]
    fn this_process_has_plausible_figures() {
        let families = ProcessCollector::new().expect("descs").collect();
        let value = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map(|f| {
                    let m = &f.get_metric()[0];
                    if f.get_field_type() == MetricType::COUNTER {
                        m.get_counter().get_value()
                    } else {
                        m.get_gauge().get_value()
                    }
                })
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        assert!(value("process_resident_memory_bytes") > 1024.0 * 1024.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started > 1.5e9 && started <= now + 1.0,
            "{started} vs {now}"
        );
        assert!(value("process_virtual_memory_max_bytes") > 0.0);
    }
}
