//! The table `api-bench` ends with: issue 11's workloads, one column per backend, each figure
//! from this run and beside its baseline from this run, then the issue's targets checked
//! against them. The machine is noisy, so only figures of the same run are compared.

/// The backends, in the order of the table's columns.
pub const BACKENDS: [&str; 3] = ["embedded", "etcd 3.4.23", "etcd 3.5"];

/// The issue's "today" figures the targets are multiples of: successful updates of growing
/// streams per server CPU second, embedded and on etcd (3.6, the etcd of that run).
const ISSUE_UPDATES_PER_CPU_EMBEDDED: f64 = 105.6;
const ISSUE_UPDATES_PER_CPU_ETCD: f64 = 90.7;

/// What the run measured, kept until the end.
#[derive(Default)]
pub struct Summary {
    rows: Vec<Row>,
    notes: Vec<String>,
    gets: [Option<f64>; 3],
    creates_64: [Option<(f64, f64)>; 3],
    updates_per_cpu: [Option<f64>; 3],
    watch_p99_paced: [Option<(usize, f64)>; 3],
}

struct Row {
    label: String,
    cells: [Option<String>; 3],
}

/// A throughput cell: operations per second, and the CPU each took the server (and etcd).
pub fn rate_cell(rate: f64, server_ms: f64, etcd_ms: Option<f64>) -> String {
    let etcd = etcd_ms
        .map(|ms| format!(", etcd {ms:.3} ms"))
        .unwrap_or_default();
    format!("{}/s (server {server_ms:.3} ms{etcd})", thousands(rate))
}

/// "1 client", "64 clients".
pub fn clients(n: usize) -> String {
    if n == 1 {
        "1 client".to_string()
    } else {
        format!("{n} clients")
    }
}

/// `n` rounded, with thousands separated by commas, as the issue writes them.
pub fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn column(backend: &str) -> Option<usize> {
    BACKENDS.iter().position(|b| *b == backend)
}

/// Puts `value` in `backend`'s place of a per-backend figure (an unknown backend has none).
fn set<T>(figures: &mut [Option<T>; 3], backend: &str, value: T) {
    if let Some(col) = column(backend) {
        figures[col] = Some(value);
    }
}

impl Summary {
    /// Puts `cell` in the row `label` (made on first use, in order) under `backend`.
    pub fn put(&mut self, label: &str, backend: &str, cell: String) {
        let Some(col) = column(backend) else {
            return;
        };
        let row = match self.rows.iter().position(|r| r.label == label) {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row {
                    label: label.to_string(),
                    cells: Default::default(),
                });
                self.rows.last_mut().expect("just pushed")
            }
        };
        row.cells[col] = Some(cell);
    }

    /// A line printed under the table.
    pub fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    /// GETs of one stream per second, for the etcd-against-embedded target.
    pub fn record_gets(&mut self, backend: &str, rate: f64) {
        set(&mut self.gets, backend, rate);
    }

    /// Creates per second at 64 clients, API and raw etcd Txns of the same run.
    pub fn record_creates_64(&mut self, backend: &str, api: f64, raw: f64) {
        set(&mut self.creates_64, backend, (api, raw));
    }

    pub fn record_updates_per_cpu(&mut self, backend: &str, per_cpu_second: f64) {
        set(&mut self.updates_per_cpu, backend, per_cpu_second);
    }

    /// The p99 latency of watch events at `watchers` watchers and a pace with room to spare.
    pub fn record_watch_p99(&mut self, backend: &str, watchers: usize, p99_ms: f64) {
        set(&mut self.watch_p99_paced, backend, (watchers, p99_ms));
    }

    /// The table, then each target of the issue with this run's figures.
    pub fn print(&self) {
        if self.rows.is_empty() && self.notes.is_empty() {
            return;
        }
        println!("## summary (issue 11's table; every figure from this run)");
        println!("| workload | {} |", BACKENDS.join(" | "));
        println!("|---|---|---|---|");
        for row in &self.rows {
            let cells: Vec<&str> = row
                .cells
                .iter()
                .map(|c| c.as_deref().unwrap_or("–"))
                .collect();
            println!("| {} | {} |", row.label, cells.join(" | "));
        }
        for note in &self.notes {
            println!("{note}");
        }
        for target in self.targets() {
            println!("{target}");
        }
    }

    fn targets(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(embedded) = self.gets[0] {
            lines.push(target_line(
                "embedded GETs per second / etcd GETs per second (target: at most 1.5x)",
                &per_backend(1..3, |i| {
                    Some(format!("{:.2}x", embedded / self.gets[i]?.max(1e-9)))
                }),
            ));
        }
        lines.push(target_line(
            "creates at 64 clients on etcd / raw etcd Txns (target: at least 50%)",
            &per_backend(1..3, |i| {
                let (api, raw) = self.creates_64[i]?;
                Some(format!("{:.0}%", 100.0 * api / raw.max(1e-9)))
            }),
        ));
        lines.push(target_line(
            "successful updates of growing streams per server CPU second (target: 5x the issue's)",
            &per_backend(0..3, |i| {
                let per_cpu = self.updates_per_cpu[i]?;
                let issue = if i == 0 {
                    ISSUE_UPDATES_PER_CPU_EMBEDDED
                } else {
                    ISSUE_UPDATES_PER_CPU_ETCD
                };
                Some(format!(
                    "{per_cpu:.0} = {:.1}x the issue's {issue}",
                    per_cpu / issue
                ))
            }),
        ));
        lines.push(target_line(
            "watch p99 after the write's response at 50 writes/s (target: at most 10 ms at 1,000 watchers)",
            &per_backend(0..3, |i| {
                let (watchers, p99) = self.watch_p99_paced[i]?;
                Some(format!(
                    "{p99:.2} ms at {} watchers",
                    thousands(watchers as f64)
                ))
            }),
        ));
        lines
    }
}

/// "backend figure" for each backend of `columns` that has a figure.
fn per_backend(
    columns: std::ops::Range<usize>,
    figure: impl Fn(usize) -> Option<String>,
) -> Vec<String> {
    columns
        .filter_map(|i| Some(format!("{} {}", BACKENDS[i], figure(i)?)))
        .collect()
}

fn target_line(what: &str, figures: &[String]) -> String {
    if figures.is_empty() {
        format!("target: {what}: not measured in this run")
    } else {
        format!("target: {what}: {}", figures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_as_the_issue_writes_them() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(5746.2), "5,746");
        assert_eq!(thousands(19_067.0), "19,067");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn rows_keep_their_first_order_and_fill_their_backends_column() {
        let mut s = Summary::default();
        s.put("GET", "etcd 3.5", "b".into());
        s.put("create", "embedded", "c".into());
        s.put("GET", "embedded", "a".into());
        s.put("GET", "etcd 9", "ignored".into());
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[0].label, "GET");
        assert_eq!(
            s.rows[0].cells,
            [Some("a".to_string()), None, Some("b".to_string())]
        );
        assert_eq!(s.rows[1].cells, [Some("c".to_string()), None, None]);
    }

    #[test]
    fn targets_compare_figures_of_the_same_run() {
        let mut s = Summary::default();
        s.record_gets("embedded", 9000.0);
        s.record_gets("etcd 3.5", 6000.0);
        s.record_creates_64("etcd 3.4.23", 2500.0, 5000.0);
        s.record_updates_per_cpu("embedded", 211.2);
        s.record_watch_p99("etcd 3.5", 1000, 9.5);
        let lines = s.targets();
        assert!(lines[0].ends_with("etcd 3.5 1.50x"), "{}", lines[0]);
        assert!(lines[1].ends_with("etcd 3.4.23 50%"), "{}", lines[1]);
        assert!(
            lines[2].ends_with("embedded 211 = 2.0x the issue's 105.6"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].ends_with("etcd 3.5 9.50 ms at 1,000 watchers"),
            "{}",
            lines[3]
        );
    }
}
