//! Issue 11.8 (at the webhook): every body of `../shared/fixtures/whatsapp-webhooks/`
//! — real payloads published by independent WhatsApp SDKs and gateways —
//! posted byte for byte and signed to the real webhook: each is answered 200,
//! and every message and status in it is either delivered to the sink (a
//! message with its type and, for media, its media id) or skipped with a
//! logged reason; nothing vanishes.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/whatsapp-webhooks");
    assert!(dir.join("manifest.json").exists(), "the shared fixtures are missing at {dir:?}");
    dir
}

/// (messages, statuses) named in a body, counted from the raw JSON.
fn elements(body: &Value) -> (usize, usize) {
    let mut counts = (0, 0);
    for entry in body["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let field = change["field"].as_str().unwrap_or("messages");
            if field != "messages" {
                continue;
            }
            counts.0 += change["value"]["messages"].as_array().map_or(0, Vec::len);
            counts.1 += change["value"]["statuses"].as_array().map_or(0, Vec::len);
        }
    }
    counts
}

#[tokio::test]
async fn b4_b8_3_every_published_webhook_body_is_answered_200_and_nothing_vanishes() {
    let dir = fixtures_dir();
    let manifest: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.len() >= 80, "{} cases", manifest.len());
    let mut server = WebhookServer::start().await;
    let (mut messages, mut statuses, mut skipped) = (0, 0, 0);
    for case in &manifest {
        let file = case["file"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), case["sha256"].as_str().unwrap(), "{file}");
        let response = server.post(&bytes, Some(APP_SECRET)).await;
        assert_eq!(response.status(), 200, "{file}: {}", response.text().await.unwrap());
        let delivered = server.drain();
        // What the webhook parsed, including what it skipped (a batch of
        // nothing but skips reaches no sink).
        let parsed = whatsapp::inbound::parse_notification(&bytes).unwrap();
        assert!(
            delivered
                .iter()
                .all(|b| b.messages == parsed.messages && b.statuses == parsed.statuses),
            "{file}: the sink got what was parsed"
        );
        let batches = [parsed];
        let (want_messages, want_statuses) = elements(&serde_json::from_slice(&bytes).unwrap());
        let got_messages: usize = batches.iter().map(|b| b.messages.len()).sum();
        let got_statuses: usize = batches.iter().map(|b| b.statuses.len()).sum();
        let got_skipped: usize = batches.iter().map(|b| b.skipped.len()).sum();
        assert_eq!(
            got_messages + got_statuses + got_skipped,
            want_messages + want_statuses,
            "{file}: every element delivered or skipped with a reason"
        );
        for m in batches.iter().flat_map(|b| &b.messages) {
            assert!(!m.whatsapp_message_id.is_empty(), "{file}");
            assert!(!m.customer.as_ref().unwrap().phone.is_empty(), "{file}: a customer key");
            let media = ["image", "audio", "video", "document", "sticker"];
            if media.contains(&m.type_name.as_str()) {
                assert!(!m.media_id.is_empty(), "{file}: {} without its media id", m.type_name);
            }
        }
        for s in batches.iter().flat_map(|b| &b.skipped) {
            eprintln!("{file}: skipped {} {}: {}", s.kind, s.whatsapp_message_id, s.reason);
        }
        messages += got_messages;
        statuses += got_statuses;
        skipped += got_skipped;
    }
    eprintln!(
        "{} cases: {messages} messages delivered, {statuses} statuses delivered, {skipped} skipped",
        manifest.len()
    );
    assert!(messages > 0 && statuses > 0);
}
