//! Build and post signed Cloud API webhooks, the way Meta does: a customer
//! text message (`switchboard simulate customer`), and the status updates the
//! [sandbox](crate::sandbox) sends after a send.
//!
//! Bodies are put on the wire as Meta does (reference §2, §8.6): compact JSON
//! with every non-ASCII character as a lowercase `\uXXXX` escape, signed over
//! exactly those bytes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::Secret;
use crate::inbound::bare_digits;
use crate::signature::{self, SIGNATURE_HEADER, ascii_json};

/// The WABA id written into simulated payloads (`entry[].id`).
pub const SANDBOX_WABA_ID: &str = "100000000000000";

/// How long a simulated webhook POST may take.
pub const WEBHOOK_POST_TIMEOUT: Duration = Duration::from_secs(10);

/// A business number as webhooks name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessNumber {
    /// `metadata.phone_number_id`.
    pub phone_number_id: String,
    /// `metadata.display_phone_number`, digits.
    pub display_phone_number: String,
}

/// A customer's text message, as `switchboard simulate customer --name --phone --to "text"` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerText {
    /// Profile name (`contacts[].profile.name`).
    pub name: String,
    /// The customer's number in any format (`+1 555 123 4567`, `15551234567`).
    pub phone: String,
    /// The business number written to.
    pub to: BusinessNumber,
    pub text: String,
    /// The wamid; choose a fresh one per message (see [`new_wamid`]).
    pub whatsapp_message_id: String,
    /// WhatsApp's `timestamp`, Unix seconds.
    pub timestamp: i64,
    /// `context.id` when replying to a business message.
    pub reply_to_whatsapp_id: Option<String>,
}

/// A fresh, unique-enough message id for simulated traffic (`wamid.SIM…`).
pub fn new_wamid(prefix: &str) -> String {
    format!("wamid.{prefix}{:032X}", rand::random::<u128>())
}

/// The webhook JSON for one customer text message (reference §4.5 example 1).
pub fn customer_text_value(msg: &CustomerText) -> Value {
    let wa_id = bare_digits(&msg.phone);
    let mut message = json!({
        "from": wa_id,
        "id": msg.whatsapp_message_id,
        "timestamp": msg.timestamp.to_string(),
        "type": "text",
        "text": { "body": msg.text },
    });
    if let (Some(reply_to), Some(obj)) = (&msg.reply_to_whatsapp_id, message.as_object_mut()) {
        obj.insert(
            "context".into(),
            json!({ "from": msg.to.display_phone_number, "id": reply_to }),
        );
    }
    envelope(
        &msg.to,
        json!({
            "contacts": [{ "profile": { "name": msg.name }, "wa_id": wa_id }],
            "messages": [message],
        }),
    )
}

/// One outbound status update to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The wamid the send returned.
    pub whatsapp_message_id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: String,
    /// Digits.
    pub recipient_id: String,
    pub timestamp: i64,
    /// For `failed`: `(code, title, details)`.
    pub error: Option<(i64, String, String)>,
}

/// The webhook JSON for status updates (reference §4.5 examples 5, 6).
pub fn status_value(from: &BusinessNumber, updates: &[StatusUpdate]) -> Value {
    let statuses: Vec<Value> = updates
        .iter()
        .map(|u| {
            let mut s = json!({
                "id": u.whatsapp_message_id,
                "status": u.status,
                "timestamp": u.timestamp.to_string(),
                "recipient_id": u.recipient_id,
            });
            if let (Some((code, title, details)), Some(obj)) = (&u.error, s.as_object_mut()) {
                obj.insert(
                    "errors".into(),
                    json!([{
                        "code": code, "title": title, "message": title,
                        "error_data": { "details": details },
                        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                    }]),
                );
            }
            s
        })
        .collect();
    envelope(from, json!({ "statuses": statuses }))
}

fn envelope(number: &BusinessNumber, mut value: Value) -> Value {
    if let Some(obj) = value.as_object_mut() {
        obj.insert("messaging_product".into(), json!("whatsapp"));
        obj.insert(
            "metadata".into(),
            json!({
                "display_phone_number": number.display_phone_number,
                "phone_number_id": number.phone_number_id,
            }),
        );
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": SANDBOX_WABA_ID, "changes": [{ "field": "messages", "value": value }] }],
    })
}

/// `value` as Meta puts it on the wire: compact, non-ASCII escaped.
pub fn wire_bytes(value: &Value) -> Vec<u8> {
    ascii_json(&value.to_string()).into_bytes()
}

/// A webhook POST that did not get a 200.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("webhook unreachable: {0}")]
    Network(String),
    #[error("webhook answered HTTP {status}: {body}")]
    Refused { status: u16, body: String },
}

/// POSTs `body` to `url` with `Content-Type: application/json` and
/// `X-Hub-Signature-256` over exactly these bytes; `Ok` only on 200 (Meta's
/// only success).
pub async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    app_secret: &Secret,
    body: Vec<u8>,
) -> Result<(), PostError> {
    let signature = signature::sign(app_secret, &body);
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .timeout(WEBHOOK_POST_TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(|e| PostError::Network(e.to_string()))?;
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default().chars().take(512).collect();
    Err(PostError::Refused { status, body })
}

/// Posts one signed customer text message to the webhook at `url` (e.g.
/// `http://127.0.0.1:8080/webhooks/whatsapp`).
pub async fn customer_text(
    url: &str,
    app_secret: &Secret,
    msg: &CustomerText,
) -> Result<(), PostError> {
    let http = reqwest::Client::new();
    post_signed(&http, url, app_secret, wire_bytes(&customer_text_value(msg))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::parse_notification;

    #[test]
    fn simulated_customer_text_round_trips_through_the_parser_and_is_ascii() {
        let msg = CustomerText {
            name: "José Núñez".into(),
            phone: "+1 555 123 4567".into(),
            to: BusinessNumber {
                phone_number_id: "110".into(),
                display_phone_number: "15550001234".into(),
            },
            text: "Olá 👍".into(),
            whatsapp_message_id: "wamid.SIM1".into(),
            timestamp: 1_761_739_200,
            reply_to_whatsapp_id: Some("wamid.BIZ".into()),
        };
        let bytes = wire_bytes(&customer_text_value(&msg));
        assert!(bytes.is_ascii());
        let batch = parse_notification(&bytes).unwrap();
        let m = &batch.messages[0];
        assert_eq!(m.text, "Olá 👍");
        assert_eq!(m.customer.as_ref().unwrap().phone, "+15551234567");
        assert_eq!(m.customer.as_ref().unwrap().name, "José Núñez");
        assert_eq!(m.source_number, "15550001234");
        assert_eq!(m.reply_to_whatsapp_id, "wamid.BIZ");
    }
}
