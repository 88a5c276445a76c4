//! CloudWatch metrics as Embedded Metric Format lines on stdout: Lambda ships them to
//! CloudWatch Logs, which turns them into metrics with no API call from the function.

/// Prints one EMF line for `migration_id` with `(name, value, unit)` metrics in namespace
/// `ferry`, twice over: per `MigrationId` (the dashboard's SEARCH), and without dimensions,
/// which is what the stack's alarms watch (an alarm names exact dimensions, and a migration's
/// id is not known when the stack is deployed).
pub fn emit(migration_id: &str, metrics: &[(&str, f64, &str)]) {
    println!("{}", emf_line(migration_id, metrics));
}

/// The EMF JSON for [`emit`].
pub fn emf_line(migration_id: &str, metrics: &[(&str, f64, &str)]) -> String {
    let timestamp = crate::contracts::epoch_ms();
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": "ferry",
                "Dimensions": [["MigrationId"], []],
                "Metrics": metrics
                    .iter()
                    .map(|(name, _, unit)| serde_json::json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        },
        "MigrationId": migration_id,
    });
    for (name, value, _) in metrics {
        line[*name] = serde_json::json!(value);
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn emf_names_every_metric_and_value() {
        let line = super::emf_line("m-1", &[("KeysCopied", 42.0, "Count")]);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["KeysCopied"], 42.0);
        assert_eq!(v["MigrationId"], "m-1");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "KeysCopied"
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["MigrationId"], []]),
            "per migration, and without dimensions for the alarms"
        );
    }
}
