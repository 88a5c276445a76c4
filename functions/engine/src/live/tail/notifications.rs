//! Keyspace notifications on the source, for the keyspace channel: the flags live mode needs,
//! turned on where the run asks and CONFIG allows, and put back at the end.

use super::*;

/// The notification flags live mode needs, added to what the server already has.
pub fn merged_notify_flags(current: &str) -> String {
    // `A` stands for every event class, but not for the keyspace channel `K`.
    let has_all = current.contains('A');
    let mut flags = current.to_string();
    for c in "Kg$lshzxet".chars() {
        let present = current.contains(c) || (has_all && c != 'K');
        if !present {
            flags.push(c);
        }
    }
    flags
}

/// Checks the source's `notify-keyspace-events` for live mode (on every cluster primary) and,
/// when asked and allowed, turns the needed flags on. Returns the original value to restore at
/// the end, if changed.
pub async fn ensure_notifications(source: &Endpoint, enable: bool) -> Result<Option<String>> {
    let mut original = None;
    for node in cluster::primary_endpoints(source).await? {
        let mut conn = Conn::connect(&node).await?;
        let Some(current) = config_get(&mut conn, "notify-keyspace-events").await? else {
            // CONFIG is blocked (ElastiCache): the canary proves delivery or refuses.
            continue;
        };
        if notifications_cover(&current) {
            continue;
        }
        if !enable {
            return Err(Error::NotificationsDisabled(format!(
                "the source {} has notify-keyspace-events '{current}'; live mode needs K plus g$lshzxet: run CONFIG SET notify-keyspace-events KA, pass --enable-notifications, or on ElastiCache set it in a custom cache parameter group",
                node.addr()
            )));
        }
        let wanted = merged_notify_flags(&current);
        conn.call(&["CONFIG", "SET", "notify-keyspace-events", &wanted])
            .await?;
        original.get_or_insert(current);
    }
    Ok(original)
}

/// Puts back the `notify-keyspace-events` value live mode found, on every primary.
pub async fn restore_notifications(source: &Endpoint, original: &str) -> Result<()> {
    for node in cluster::primary_endpoints(source).await? {
        let mut conn = Conn::connect(&node).await?;
        conn.call(&["CONFIG", "SET", "notify-keyspace-events", original])
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_flags() {
        assert_eq!(merged_notify_flags(""), "Kg$lshzxet");
        assert_eq!(merged_notify_flags("Ex"), "ExKg$lshzet");
        assert_eq!(merged_notify_flags("AK"), "AK");
        assert!(notifications_cover(&merged_notify_flags("E")));
    }
}
