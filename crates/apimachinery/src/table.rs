//! Server-side printing (spec §4.4): `meta.k8s.io/v1` Table, and PartialObjectMetadata.
//! k8s-openapi has no Table types; every field Go always emits is always emitted here too.

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Debug, Serialize)]
pub struct ColumnDefinition {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

impl ColumnDefinition {
    pub const fn new(name: &'static str, type_: &'static str, description: &'static str) -> Self {
        ColumnDefinition {
            name,
            type_,
            format: "",
            description,
            priority: 0,
        }
    }

    pub const fn with_format(mut self, format: &'static str) -> Self {
        self.format = format;
        self
    }

    pub const fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }
}

/// The `Name` column every table starts with.
pub const NAME_COLUMN: ColumnDefinition = ColumnDefinition::new(
    "Name",
    "string",
    "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
)
.with_format("name");

#[derive(Clone, Debug, Serialize)]
pub struct TableRow {
    pub cells: Vec<Value>,
    /// Go emits `null` for `includeObject=None`.
    pub object: Value,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub metadata: Value,
    pub column_definitions: Vec<ColumnDefinition>,
    pub rows: Vec<TableRow>,
}

impl Table {
    pub fn new(metadata: Value, columns: Vec<ColumnDefinition>, rows: Vec<TableRow>) -> Self {
        Table {
            kind: "Table",
            api_version: "meta.k8s.io/v1",
            metadata,
            column_definitions: columns,
            rows,
        }
    }
}

/// `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{...}}` of an
/// object's JSON.
pub fn partial_object_metadata(object: &Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
    })
}

/// Go's `duration.HumanDuration`, as `kubectl get` prints ages (`5s`, `3m2s`, `4h`, `2d3h`).
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 * 2 {
        return format!("{s}s");
    }
    let minutes = s / 60;
    if minutes < 10 {
        let rem = s % 60;
        return if rem == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{rem}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = s / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{d}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }

    #[test]
    fn table_always_has_object_and_column_fields() {
        let t = Table::new(
            serde_json::json!({}),
            vec![NAME_COLUMN],
            vec![TableRow {
                cells: vec![Value::from("a")],
                object: Value::Null,
            }],
        );
        let v = serde_json::to_value(&t).expect("json");
        assert_eq!(v["rows"][0]["object"], Value::Null);
        assert_eq!(v["columnDefinitions"][0]["format"], "name");
        assert_eq!(v["columnDefinitions"][0]["priority"], 0);
    }
}
