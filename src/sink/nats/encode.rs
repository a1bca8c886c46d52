//! What the `nats` sink makes of a batch before publishing: a check that every record can be published,
//! then one message per record — subject `<subject>.<site>`, the minimized event as payload, the event id
//! as `Nats-Msg-Id` (JetStream's de-duplication key, so a retried batch is stored once). Pure, so the bench
//! can measure it apart from the connection.

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use super::config::is_token;
use crate::sink::{DeadReason, SendError};
use crate::spool::StoredRecord;

/// Refuses the whole batch (`Dead(Invalid)`) if a record's site is not a subject token or its event id is
/// not a `Nats-Msg-Id`; the error names the record's index, never its content.
pub fn check_batch(records: &[StoredRecord]) -> Result<(), SendError> {
    match records
        .iter()
        .position(|r| !is_token(&r.site) || !valid_id(&r.event_id))
    {
        None => Ok(()),
        Some(i) => Err(SendError::dead(
            DeadReason::Invalid,
            format!("record {i}: site is not a subject token or event id is not a Nats-Msg-Id"),
        )),
    }
}

/// One record's subject and message.
pub fn message(subject: &str, record: &StoredRecord) -> (String, PublishMessage) {
    let subject = format!("{subject}.{}", record.site);
    let msg = PublishMessage::build()
        .payload(Bytes::copy_from_slice(&record.payload))
        .message_id(&record.event_id);
    (subject, msg)
}

/// A `Nats-Msg-Id` value: non-empty, no control characters (header syntax), no surrounding spaces.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.trim() == id && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Route;

    fn rec(site: &str, event_id: &str) -> StoredRecord {
        StoredRecord {
            site: site.into(),
            event_id: event_id.into(),
            received_ms: 1,
            route: Route::All,
            payload: br#"{"type":"page_view"}"#.to_vec(),
        }
    }

    #[test]
    fn message_ids_must_be_header_safe() {
        assert!(valid_id("01JD3V4X7E8K9M2N5P6Q7R8S9T"));
        for bad in ["", " a", "a ", "a\r\nX: y", "a\tb"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_batch_with_one_unpublishable_record_is_refused_by_index() {
        assert!(check_batch(&[rec("shop_1", "e-1")]).is_ok());
        let err = check_batch(&[rec("shop_1", "e-1"), rec("shop.1", "e-2")]).unwrap_err();
        let SendError::Dead {
            reason: DeadReason::Invalid,
            detail,
        } = err
        else {
            panic!("{err:?}")
        };
        assert!(detail.starts_with("record 1:"), "{detail}");
        assert!(check_batch(&[rec("shop_1", "a\r\nX: y")]).is_err());
    }

    #[test]
    fn a_message_goes_to_the_site_subject_with_the_event_id() {
        let (subject, _msg) = message("events", &rec("shop_1", "e-1"));
        assert_eq!(subject, "events.shop_1");
    }
}
