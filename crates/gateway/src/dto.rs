//! The API's shapes (GATEWAY-API.md): camelCase JSON, RFC 3339 UTC times
//! with milliseconds, E.164 phones. Only add fields here; never rename or
//! remove one within v1.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Role;

// ---- answers -------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    pub id: String,
    pub name: String,
    pub offer_timeout_secs: u32,
    pub priority: i32,
    pub skills: Vec<String>,
    /// Conversations waiting in this queue (state `queued`).
    pub waiting: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryPoint {
    /// Digits, as WhatsApp's `display_phone_number`.
    pub business_number: String,
    pub queue_id: String,
}

/// `LoggedOut`, `Idle`, `Available` or `RONA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PresenceState {
    LoggedOut,
    Idle,
    Available,
    #[serde(rename = "RONA")]
    Rona,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub state: PresenceState,
    /// Set while `Idle` (`break`, `lunch`, `disconnected`, …).
    pub idle_reason: Option<String>,
    #[schema(format = DateTime)]
    pub state_since: Option<String>,
    pub slots_used: u32,
    pub capacity: u32,
    pub skills: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub state: PresenceState,
    pub idle_reason: Option<String>,
    #[schema(format = DateTime)]
    pub state_since: Option<String>,
    pub slots_used: u32,
    pub capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WrapupReason {
    pub code: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingWrapup {
    pub conversation_id: String,
    pub wrapup_id: String,
    #[schema(format = DateTime)]
    pub since: String,
    /// When the auto wrap-up happens (B7.4); absent when disabled.
    #[schema(format = DateTime)]
    pub auto_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OfferKind {
    New,
    Transfer,
    Conference,
}

/// An offer to an agent (B2.1).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    pub offer_id: String,
    pub conversation_id: String,
    pub agent_id: String,
    pub kind: OfferKind,
    pub customer_name: String,
    /// E.164 with `+`.
    pub customer_phone: String,
    pub source_number: String,
    pub queue_id: String,
    pub queue_name: String,
    #[schema(format = DateTime)]
    pub offered_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub name: String,
    /// E.164 with `+`.
    pub phone: String,
    pub initials: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub agent_id: String,
    pub name: String,
    pub initials: String,
    /// `owner` or `participant`.
    pub role: String,
}

/// `queued`, `offered`, `active`, `conferenceRequested`, `conference`, `ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ConversationState {
    Queued,
    Offered,
    Active,
    ConferenceRequested,
    Conference,
    Ended,
}

impl ConversationState {
    pub fn parse(s: &str) -> Option<ConversationState> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: String,
    pub state: ConversationState,
    pub customer: Customer,
    pub source_number: String,
    pub queue_id: Option<String>,
    pub queue_name: Option<String>,
    pub owner: Option<String>,
    pub participants: Vec<Participant>,
    /// 24 h after the customer's last message (B4.6).
    #[schema(format = DateTime)]
    pub window_closes_at: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    /// The transcript; absent in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SenderKind {
    Customer,
    Agent,
    System,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    pub kind: SenderKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub initials: String,
}

/// `pending`, `sent`, `delivered`, `read` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Delivered,
    Read,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub code: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub direction: Direction,
    pub sender: Sender,
    pub text: String,
    /// `text`, `image`, `audio`, …, or WhatsApp's own name for an unknown type.
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[schema(format = DateTime)]
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<DeliveryStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeAgent {
    pub id: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub agent: MeAgent,
    /// `null` until a supervisor registered this agent.
    pub presence: Option<Presence>,
    pub offers: Vec<Offer>,
    /// Conversations the caller takes part in (without messages).
    pub conversations: Vec<Conversation>,
    pub pending_wrapups: Vec<PendingWrapup>,
}

// ---- requests ------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PutQueue {
    pub name: String,
    /// Default 30.
    pub offer_timeout_secs: Option<u32>,
    /// Default 0.
    pub priority: Option<i32>,
    pub skills: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PutEntryPoint {
    pub queue_id: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PutAgent {
    pub name: String,
    /// Concurrent conversations, default 3.
    pub capacity: Option<u32>,
    pub skills: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeState {
    /// `Available`, `Idle` or `LoggedOut`.
    pub state: String,
    /// The idle reason when `state` is `Idle` (`break`, `lunch`, …).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PutWrapupReason {
    pub label: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reassign {
    pub agent_id: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// At most 4096 characters, not blank (B4.2).
    pub text: String,
}

/// Exactly one of `queueId` and `agentId`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub queue_id: Option<String>,
    pub agent_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitWrapup {
    /// A wrap-up reason code.
    pub reason: String,
    pub note: Option<String>,
}
