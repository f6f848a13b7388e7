//! The requests etcd answered, by its own count (`grpc_server_handled_total` on its /metrics):
//! the bench prints how many etcd requests an API operation cost beside the CPU it took, so a
//! reader can tell a cost per etcd request from a count of them.

/// Unary KV requests etcd handled, whatever their outcome, and the bytes it sent its gRPC
/// clients (replies and watch events).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EtcdRequests {
    pub ranges: f64,
    pub txns: f64,
    pub sent_bytes: f64,
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
            if let Some(value) = line.strip_prefix("etcd_network_client_grpc_sent_bytes_total ") {
                counts.sent_bytes += value.trim().parse::<f64>().unwrap_or(0.0);
                continue;
            }
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
            sent_bytes: self.sent_bytes - before.sent_bytes,
        }
    }

    /// Per operation, for a measurement's line: `etcd Range 0.17/op, Txn 0.00/op, sent 1.2 KB/op`.
    pub fn per_op(self, ops: f64) -> String {
        let ops = ops.max(1.0);
        format!(
            "etcd Range {:.2}/op, Txn {:.2}/op, sent {:.1} KB/op",
            self.ranges / ops,
            self.txns / ops,
            self.sent_bytes / ops / 1e3
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
# HELP etcd_network_client_grpc_sent_bytes_total The total number of bytes sent to grpc clients.
# TYPE etcd_network_client_grpc_sent_bytes_total counter
etcd_network_client_grpc_sent_bytes_total 2.5e+07
etcd_network_client_grpc_received_bytes_total 9e+06
"#;

    #[test]
    fn counts_kv_requests_of_every_outcome_and_the_bytes_sent() {
        assert_eq!(
            EtcdRequests::parse(SAMPLE),
            EtcdRequests {
                ranges: 1240.0,
                txns: 5e6,
                sent_bytes: 2.5e7,
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
            sent_bytes: 1e6,
        };
        let after = EtcdRequests {
            ranges: 160.0,
            txns: 310.0,
            sent_bytes: 1.6e6,
        };
        assert_eq!(
            after.since(before).per_op(300.0),
            "etcd Range 0.20/op, Txn 1.00/op, sent 2.0 KB/op"
        );
    }
}
