//! Cloud API webhook payloads → what the conversation service consumes.
//!
//! The walk is over a `serde_json::Value`, not a strict schema: one odd field
//! (a number where a string was expected, a missing type object, a type we
//! never heard of) must not cost the other updates of the payload (reference
//! §4.4, §9: "never assume that the object named by `type` is present"). Every
//! `entry[]`, `changes[]`, `messages[]`, `statuses[]` and `errors[]` is visited.
//! The only payload-level failure is a body that is not a JSON object.

use sb_proto::Timestamp;
use sb_proto::v1::{
    Customer, DeliveryStatus, MessageType, ReceiveCustomerMessage, RecordMessageStatus,
};
use serde_json::Value;

/// Everything one webhook delivery carried, in payload order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboundBatch {
    /// Customer messages, one per `messages[]` element, ready for the
    /// conversation service's `receive` command.
    pub messages: Vec<ReceiveCustomerMessage>,
    /// Delivery statuses of our outbound messages, keyed by WhatsApp message id
    /// (the conversation is not known at the edge).
    pub statuses: Vec<InboundStatus>,
    /// Out-of-band errors (`value.errors[]`) not tied to one message.
    pub errors: Vec<WebhookError>,
    /// Elements that cannot be acted on at all (no message id, no sender); kept
    /// so the caller can log them rather than have them vanish.
    pub skipped: Vec<Skipped>,
}

impl InboundBatch {
    /// True when there is nothing to hand on (e.g. a `field` we do not subscribe to).
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.statuses.is_empty() && self.errors.is_empty()
    }
}

/// A `statuses[]` element.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundStatus {
    /// `metadata.phone_number_id` of the business number that sent the message.
    pub phone_number_id: String,
    /// `metadata.display_phone_number` (digits).
    pub business_number: String,
    /// `statuses[].id`: the wamid the send API returned.
    pub whatsapp_message_id: String,
    /// `SENT`, `DELIVERED`, `READ`, `FAILED`; `UNSPECIFIED` for anything else
    /// (e.g. `played`, see `status_name`), which moves nothing forward.
    pub status: DeliveryStatus,
    /// The raw `status` string.
    pub status_name: String,
    /// WhatsApp's `timestamp` (Unix seconds).
    pub timestamp: Option<Timestamp>,
    /// `recipient_id` as E.164 with `+` (empty when WhatsApp sent none).
    pub recipient: String,
    /// `errors[0].code` for `failed`, else 0.
    pub failure_code: i64,
    /// `errors[0].title` (or `message`), with `error_data.details` after ": " when present.
    pub failure_reason: String,
}

impl InboundStatus {
    /// The conversation service's `record-status` command, once the lead has
    /// looked up which conversation and message this wamid belongs to.
    pub fn to_record(&self, conversation_id: &str, message_id: &str) -> RecordMessageStatus {
        RecordMessageStatus {
            conversation_id: conversation_id.to_owned(),
            message_id: message_id.to_owned(),
            status: self.status as i32,
            whatsapp_message_id: self.whatsapp_message_id.clone(),
            failure_code: self.failure_code,
            failure_reason: self.failure_reason.clone(),
        }
    }
}

/// A `value.errors[]` element (e.g. 130429 throughput reached).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookError {
    pub phone_number_id: String,
    pub code: i64,
    pub title: String,
    pub details: String,
}

/// An element of the payload that could not become a message or status.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// `messages` or `statuses`.
    pub kind: &'static str,
    /// The element's `id`, when it had one.
    pub whatsapp_message_id: String,
    pub reason: &'static str,
}

/// The body is not a JSON object at all (→ 400 once the signature was valid).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("webhook body is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("webhook body is not a JSON object")]
    NotAnObject,
    /// Signed, JSON, but not the shape of a Cloud API notification (B8.3:
    /// answered 400 so that it shows in Meta's dashboard).
    #[error("webhook body is not a notification: {0}")]
    Shape(&'static str),
}

/// Limits on webhook fields, from WhatsApp's own: a wamid is a base64 blob of
/// well under 256 characters, a BSUID at most 256, a phone number at most 15
/// digits (E.164; 20 with formatting), a text body (or caption) 4096 characters, a profile name or username 256. An element over a limit is not from
/// WhatsApp: it is skipped (logged, counted), never stored.
pub mod limits {
    pub const ID: usize = 256;
    pub const PHONE: usize = 20;
    pub const TEXT: usize = 4096;
    pub const NAME: usize = 256;
}

/// Parses a Cloud API webhook body. Never panics; see the module docs for
/// what is lenient.
pub fn parse_notification(body: &[u8]) -> Result<InboundBatch, ParseError> {
    let root: Value = serde_json::from_slice(body)?;
    if !root.is_object() {
        return Err(ParseError::NotAnObject);
    }
    let Some(entries) = root.get("entry").and_then(Value::as_array) else {
        return Err(ParseError::Shape("`entry` must be an array"));
    };
    let mut batch = InboundBatch::default();
    for entry in entries {
        if !entry.is_object() {
            return Err(ParseError::Shape("every `entry` must be an object"));
        }
        if entry.get("changes").is_some_and(|c| !c.is_array()) {
            return Err(ParseError::Shape("`changes` must be an array"));
        }
        for change in array(entry, "changes") {
            // Other subscribed fields (account_update, template status, …)
            // carry no customer messages.
            let field = string(change, "field");
            if !field.is_empty() && field != "messages" {
                continue;
            }
            let Some(value) = change.get("value").filter(|v| v.is_object()) else { continue };
            parse_value(value, &mut batch);
        }
    }
    Ok(batch)
}

fn parse_value(value: &Value, batch: &mut InboundBatch) {
    let metadata = value.get("metadata").unwrap_or(&Value::Null);
    let business_number = string(metadata, "display_phone_number");
    let phone_number_id = string(metadata, "phone_number_id");
    let contacts = array(value, "contacts");

    for m in array(value, "messages") {
        match customer_message(m, business_number, phone_number_id, contacts) {
            Ok(msg) => batch.messages.push(msg),
            Err(reason) => batch.skipped.push(Skipped {
                kind: "messages",
                whatsapp_message_id: string(m, "id").to_owned(),
                reason,
            }),
        }
    }
    for s in array(value, "statuses") {
        match status(s, business_number, phone_number_id) {
            Ok(st) => batch.statuses.push(st),
            Err(reason) => batch.skipped.push(Skipped {
                kind: "statuses",
                whatsapp_message_id: string(s, "id").to_owned(),
                reason,
            }),
        }
    }
    for e in array(value, "errors") {
        batch.errors.push(WebhookError {
            phone_number_id: phone_number_id.to_owned(),
            code: integer(e, "code").unwrap_or(0),
            title: first_non_empty(&[string(e, "title"), string(e, "message")]).to_owned(),
            details: string(e.get("error_data").unwrap_or(&Value::Null), "details").to_owned(),
        });
    }
}

fn customer_message(
    m: &Value,
    business_number: &str,
    phone_number_id: &str,
    contacts: &[Value],
) -> Result<ReceiveCustomerMessage, &'static str> {
    let id = string(m, "id");
    if id.is_empty() {
        return Err("message has no id");
    }
    if id.chars().count() > limits::ID
        || business_number.chars().count() > limits::PHONE
        || phone_number_id.chars().count() > limits::ID
    {
        return Err("a message or business number id is longer than WhatsApp's");
    }
    let from = string(m, "from");
    // The contact for this sender; a payload with one contact names it alone.
    let contact = contacts
        .iter()
        .find(|c| !from.is_empty() && string(c, "wa_id") == from)
        .or_else(|| if contacts.len() == 1 { contacts.first() } else { None });
    let wa_id = contact.map(|c| string(c, "wa_id")).filter(|w| !w.is_empty()).unwrap_or(from);
    if wa_id.chars().count() > limits::PHONE {
        return Err("the sender's number is longer than WhatsApp's");
    }
    let profile = contact.and_then(|c| c.get("profile")).unwrap_or(&Value::Null);
    // B4.7: without a number (usernames, reference §4.6) the customer is
    // known by the business-scoped user id, which is also where replies go.
    let bsuid = first_non_empty(&[
        contact.map(|c| string(c, "user_id")).unwrap_or_default(),
        string(m, "from_user_id"),
    ]);
    let phone = match e164(wa_id) {
        number if !number.is_empty() => number,
        _ if !bsuid.is_empty() && bsuid.chars().count() <= limits::ID => bsuid.to_owned(),
        _ => return Err("message names no sender (no wa_id, from or user id)"),
    };
    let name = first_non_empty(&[string(profile, "name"), string(profile, "username")]);
    if name.chars().count() > limits::NAME {
        return Err("the sender's profile name is longer than WhatsApp's");
    }
    let name = name.to_owned();

    let type_name = string(m, "type");
    let body = m.get(type_name).filter(|_| !type_name.is_empty()).unwrap_or(&Value::Null);
    let content = content(type_name, body);
    if content.text.chars().count() > limits::TEXT || content.media_id.chars().count() > limits::ID
    {
        return Err("a text, caption or media id is longer than WhatsApp's");
    }
    let context_id = string(m.get("context").unwrap_or(&Value::Null), "id");
    let reply_to = if content.reply_to.is_empty() { context_id } else { content.reply_to };

    Ok(ReceiveCustomerMessage {
        source_number: business_number.to_owned(),
        phone_number_id: phone_number_id.to_owned(),
        customer: Some(Customer { name, phone }),
        whatsapp_message_id: id.to_owned(),
        r#type: content.kind as i32,
        type_name: content.type_name,
        text: content.text,
        media_id: content.media_id,
        sent_at: integer(m, "timestamp").map(|seconds| Timestamp { seconds, nanos: 0 }),
        reply_to_whatsapp_id: reply_to.to_owned(),
    })
}

struct Content<'a> {
    kind: MessageType,
    type_name: String,
    text: String,
    media_id: String,
    /// Overrides `context.id` (a reaction points at the message reacted to).
    reply_to: &'a str,
}

/// What to show and keep for each WhatsApp type (reference §4.4). Unknown
/// types keep their raw name (B4.5); `unsupported` keeps the inner type too
/// (`unsupported:poll_creation`).
fn content<'a>(type_name: &str, body: &'a Value) -> Content<'a> {
    let mut c = Content {
        kind: MessageType::Unknown,
        type_name: type_name.to_owned(),
        text: String::new(),
        media_id: String::new(),
        reply_to: "",
    };
    match type_name {
        "text" => {
            c.kind = MessageType::Text;
            c.text = string(body, "body").to_owned();
        }
        "image" | "audio" | "video" | "document" | "sticker" => {
            c.kind = match type_name {
                "image" => MessageType::Image,
                "audio" => MessageType::Audio,
                "video" => MessageType::Video,
                "document" => MessageType::Document,
                _ => MessageType::Sticker,
            };
            c.media_id = string(body, "id").to_owned();
            c.text =
                first_non_empty(&[string(body, "caption"), string(body, "filename")]).to_owned();
        }
        "location" => {
            c.kind = MessageType::Location;
            c.text = location_text(body);
        }
        "contacts" => {
            c.kind = MessageType::Contacts;
            c.text = contacts_text(body);
        }
        "reaction" => {
            c.kind = MessageType::Reaction;
            // Empty or absent emoji: the reaction was removed.
            c.text = string(body, "emoji").to_owned();
            c.reply_to = string(body, "message_id");
        }
        "interactive" => {
            c.kind = MessageType::Interactive;
            let sub = string(body, "type");
            let reply = body.get(sub).filter(|_| !sub.is_empty()).unwrap_or(&Value::Null);
            c.text = first_non_empty(&[string(reply, "title"), string(reply, "body")]).to_owned();
        }
        "button" => {
            c.kind = MessageType::Button;
            c.text = first_non_empty(&[string(body, "text"), string(body, "payload")]).to_owned();
        }
        "unsupported" => {
            let inner = string(body, "type");
            if !inner.is_empty() {
                c.type_name = format!("unsupported:{inner}");
            }
        }
        // order, system, anything new: kept as UNKNOWN with whatever text it has.
        _ => {
            c.text = first_non_empty(&[string(body, "body"), string(body, "text")]).to_owned();
        }
    }
    c
}

fn location_text(body: &Value) -> String {
    let coords = match (number(body, "latitude"), number(body, "longitude")) {
        (Some(lat), Some(lon)) => format!("{lat}, {lon}"),
        _ => String::new(),
    };
    [string(body, "name"), string(body, "address"), coords.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" · ")
}

fn contacts_text(body: &Value) -> String {
    let cards = body.as_array().map(Vec::as_slice).unwrap_or_default();
    cards
        .iter()
        .map(|card| {
            let name = string(card.get("name").unwrap_or(&Value::Null), "formatted_name");
            let phones: Vec<&str> =
                array(card, "phones").iter().map(|p| string(p, "phone")).collect();
            [name, &phones.join(", ")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn status(
    s: &Value,
    business_number: &str,
    phone_number_id: &str,
) -> Result<InboundStatus, &'static str> {
    let id = string(s, "id");
    if id.is_empty() {
        return Err("status has no message id");
    }
    let status_name = string(s, "status");
    let status = match status_name {
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Read,
        "failed" => DeliveryStatus::Failed,
        _ => DeliveryStatus::Unspecified,
    };
    let error = array(s, "errors").first().unwrap_or(&Value::Null);
    let title = first_non_empty(&[string(error, "title"), string(error, "message")]);
    let details = string(error.get("error_data").unwrap_or(&Value::Null), "details");
    let failure_reason = match (title.is_empty(), details.is_empty()) {
        (false, false) => format!("{title}: {details}"),
        (false, true) => title.to_owned(),
        (true, _) => details.to_owned(),
    };
    Ok(InboundStatus {
        phone_number_id: phone_number_id.to_owned(),
        business_number: business_number.to_owned(),
        whatsapp_message_id: id.to_owned(),
        status,
        status_name: status_name.to_owned(),
        timestamp: integer(s, "timestamp").map(|seconds| Timestamp { seconds, nanos: 0 }),
        recipient: e164(string(s, "recipient_id")),
        failure_code: integer(error, "code").unwrap_or(0),
        failure_reason,
    })
}

/// `+` and the digits of a WhatsApp id (`447700900123` → `+447700900123`);
/// empty when there are no digits.
pub fn e164(wa_id: &str) -> String {
    let digits: String = wa_id.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() { String::new() } else { format!("+{digits}") }
}

/// Where a send goes: the bare digits of a number (`+44 7700-900123` →
/// `447700900123`), or a business-scoped user id as it is (B4.7).
pub fn send_to(customer: &str) -> String {
    let is_number = customer.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c));
    if is_number { bare_digits(customer) } else { customer.to_owned() }
}

/// The bare digits WhatsApp uses for a number (`+44 7700-900123` → `447700900123`).
pub fn bare_digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

// ---- lenient accessors: absent or mistyped fields read as empty -------------

fn string<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// An integer sent as a JSON number or as a string of digits (WhatsApp's
/// timestamps are strings).
fn integer(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn number(v: &Value, key: &str) -> Option<f64> {
    match v.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn first_non_empty<'a>(candidates: &[&'a str]) -> &'a str {
    candidates.iter().copied().find(|s| !s.is_empty()).unwrap_or_default()
}
