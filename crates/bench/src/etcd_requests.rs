//! The requests etcd answered, by its own count (`grpc_server_handled_total` on its /metrics):
//! the bench prints how many etcd requests an API operation cost beside the CPU it took, so a
//! reader can tell a cost per etcd request from a count of them.

/// Unary KV requests etcd handled, whatever their outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EtcdRequests {
    pub ranges: f64,
    pub txns: f64,
}

impl EtcdRequests {
    /// The counts etcd at `endpoint` reports now; none when its /metrics does not answer.
    pub async fn read(endpoint: &str) -> Option<Self> {
        let resp = reqwest::get(format!("{endpoint}/metrics")).await.ok()?;
        Some(Self::parse(&resp.text().await.ok()?))
    }

    /// The counts in a Prometheus text exposition of etcd's metrics.
    pub fn parse(text: &str) -> Self {
        let mut counts = EtcdRequests::default();
        for line in text.lines() {
            let Some(labels) = line.strip_prefix("grpc_server_handled_total{") else {
                continue;
            };
            let Some((labels, value)) = labels.rsplit_once("} ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            if !labels.contains("grpc_service=\"etcdserverpb.KV\"") {
                continue;
            }
            if labels.contains("grpc_method=\"Range\"") {
                counts.ranges += value;
            } else if labels.contains("grpc_method=\"Txn\"") {
                counts.txns += value;
            }
        }
        counts
    }

    /// The requests handled between `before` and this reading.
    pub fn since(self, before: Self) -> Self {
        EtcdRequests {
            ranges: self.ranges - before.ranges,
            txns: self.txns - before.txns,
        }
    }

    /// Per operation, for a measurement's line: `etcd Range 0.17/op, Txn 0.00/op`.
    pub fn per_op(self, ops: f64) -> String {
        let ops = ops.max(1.0);
        format!(
            "etcd Range {:.2}/op, Txn {:.2}/op",
            self.ranges / ops,
            self.txns / ops
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="Aborted",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 0
grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1234
grpc_server_handled_total{grpc_code="Unavailable",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 6
grpc_server_handled_total{grpc_code="OK",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"} 5e+06
grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.Maintenance",grpc_type="unary"} 99
grpc_server_handled_total{grpc_code="OK",grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 3
grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1300
"#;

    #[test]
    fn counts_kv_ranges_and_txns_of_every_outcome_and_nothing_else() {
        assert_eq!(
            EtcdRequests::parse(SAMPLE),
            EtcdRequests {
                ranges: 1240.0,
                txns: 5e6
            }
        );
    }

    #[test]
    fn text_without_the_counter_counts_nothing() {
        assert_eq!(
            EtcdRequests::parse("etcd_mvcc_range_total 12\n"),
            EtcdRequests::default()
        );
    }

    #[test]
    fn per_operation_figures_are_differences_over_successes() {
        let before = EtcdRequests {
            ranges: 100.0,
            txns: 10.0,
        };
        let after = EtcdRequests {
            ranges: 160.0,
            txns: 310.0,
        };
        assert_eq!(
            after.since(before).per_op(300.0),
            "etcd Range 0.20/op, Txn 1.00/op"
        );
    }
}
