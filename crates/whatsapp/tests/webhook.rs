//! The webhook over real HTTP: handshake, signatures, every payload shape of
//! the reference, batches, and 200 only after the sink succeeded.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;

use common::*;
use sb_proto::v1::{DeliveryStatus, MessageType, ReceiveCustomerMessage};
use serde_json::json;
use whatsapp::inbound::InboundBatch;
use whatsapp::webhook::WebhookConfig;

fn handshake_url(server: &WebhookServer, mode: &str, token: &str, challenge: &str) -> String {
    format!("{}?hub.mode={mode}&hub.verify_token={token}&hub.challenge={challenge}", server.url())
}

fn customer(m: &ReceiveCustomerMessage) -> (&str, &str) {
    let c = m.customer.as_ref().unwrap();
    (c.name.as_str(), c.phone.as_str())
}

async fn deliver_ok(server: &mut WebhookServer, body: &[u8]) -> InboundBatch {
    let response = server.post(body, Some(APP_SECRET)).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let batch = server.next().await;
    assert!(server.drain().is_empty(), "one payload is one delivery");
    batch
}

#[tokio::test]
async fn b8_2_handshake_with_the_verify_token_echoes_the_challenge_as_text() {
    let server = WebhookServer::start().await;
    let r = reqwest::get(handshake_url(&server, "subscribe", VERIFY_TOKEN, "1158201444"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "1158201444");
    // Opaque, percent-decoded, echoed unchanged.
    let r =
        reqwest::get(handshake_url(&server, "subscribe", VERIFY_TOKEN, "a%20b%2Bc")).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "a b+c");
}

#[tokio::test]
async fn b8_2_handshake_with_a_wrong_token_or_mode_is_403() {
    let server = WebhookServer::start().await;
    for url in [
        handshake_url(&server, "subscribe", "wrong", "1"),
        handshake_url(&server, "subscribe", "", "1"),
        handshake_url(&server, "unsubscribe", VERIFY_TOKEN, "1"),
        format!("{}?hub.challenge=1", server.url()),
        server.url(),
    ] {
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 403, "{url}");
        assert_ne!(r.text().await.unwrap(), "1");
    }
}

#[tokio::test]
async fn b8_2_empty_configured_verify_token_refuses_every_handshake() {
    let server = WebhookServer::start_with(WebhookConfig::new(APP_SECRET, "")).await;
    let r = reqwest::get(handshake_url(&server, "subscribe", "", "1")).await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn b8_2_missing_signature_is_401_and_nothing_delivered() {
    let mut server = WebhookServer::start().await;
    let body = from_ana(
        json!([{ "from": "447700900123", "id": "wamid.A", "timestamp": "1761739200", "type": "text", "text": { "body": "hi" } }]),
    );
    let r = server.post(&body, None).await;
    assert_eq!(r.status(), 401);
    assert!(server.drain().is_empty());
}

#[tokio::test]
async fn b8_2_wrong_signature_is_401_and_nothing_delivered() {
    let mut server = WebhookServer::start().await;
    let body = from_ana(
        json!([{ "from": "447700900123", "id": "wamid.A", "timestamp": "1761739200", "type": "text", "text": { "body": "hi" } }]),
    );
    // Signed with another app's secret.
    assert_eq!(server.post(&body, Some("someone-elses-secret")).await.status(), 401);
    // Signed correctly, then tampered with.
    let good = whatsapp::signature::sign(&whatsapp::Secret::new(APP_SECRET), &body);
    let mut tampered = body.clone();
    let at = tampered.iter().position(|&b| b == b'h').unwrap();
    tampered[at] = b'H';
    for (header, bytes) in [
        (good.as_str(), tampered.as_slice()),
        ("sha256=", body.as_slice()),
        ("sha1=0123", body.as_slice()),
        ("garbage", body.as_slice()),
    ] {
        let r = reqwest::Client::new()
            .post(server.url())
            .header("x-hub-signature-256", header)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{header}");
    }
    assert!(server.drain().is_empty());
}

/// Reference §2 vector B, byte for byte, with its published signature.
const VECTOR_B: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Jos\u00e9"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.TEST1","timestamp":"1749416383","type":"text","text":{"body":"Ol\u00e1 \ud83d\udc4d"}}]},"field":"messages"}]}]}"#;
const VECTOR_B_SIG: &str =
    "sha256=41c1b7428e52030ba1a23bea8d54657332bd7b6bef3fcdbee68538675f8de0c3";
const VECTOR_B_RESERIALIZED_SIG: &str =
    "sha256=4c6661a69deeff552945ffe4c930a65932f9009a7d92b83886d30f8a62120571";

async fn post_with_header(server: &WebhookServer, body: &str, header: &str) -> u16 {
    reqwest::Client::new()
        .post(server.url())
        .header("content-type", "application/json")
        .header("x-hub-signature-256", header)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn b8_2_right_signature_over_the_raw_bytes_is_delivered() {
    let mut server = WebhookServer::start().await;
    assert_eq!(post_with_header(&server, VECTOR_B, VECTOR_B_SIG).await, 200);
    let batch = server.next().await;
    let m = &batch.messages[0];
    assert_eq!(customer(m), ("José", "+16505551234"));
    assert_eq!(m.text, "Olá 👍");
    // A signature over a re-serialization of the same JSON is not Meta's.
    assert_eq!(post_with_header(&server, VECTOR_B, VECTOR_B_RESERIALIZED_SIG).await, 401);
    assert!(server.drain().is_empty());
}

#[tokio::test]
async fn b8_2_unescaped_body_signed_over_its_escaped_form_is_accepted() {
    // Reference §2 vector C: we implement the fallback.
    let mut server = WebhookServer::start().await;
    let c = VECTOR_B.replace(r"Jos\u00e9", "José").replace(r"Ol\u00e1 \ud83d\udc4d", "Olá 👍");
    assert_eq!(post_with_header(&server, &c, VECTOR_B_SIG).await, 200);
    assert_eq!(server.next().await.messages[0].text, "Olá 👍");
}

#[tokio::test]
async fn b4_text_message_keeps_customer_business_number_and_whatsapp_timestamp() {
    let mut server = WebhookServer::start().await;
    let body = from_ana(json!([{
        "from": "447700900123",
        "id": "wamid.HBgMNDQ3NzAwOTAwMTIzFQIAEhgUM0E1RjQxQzlCN0QyRTZGMDg4QTQA",
        "timestamp": "1761739200",
        "type": "text",
        "text": { "body": "Hi, my order #5521 has not arrived yet" }
    }]));
    let batch = deliver_ok(&mut server, &body).await;
    assert_eq!(batch.messages.len(), 1);
    let m = &batch.messages[0];
    assert_eq!(customer(m), ("Ana Souza", "+447700900123"));
    assert_eq!(m.source_number, BUSINESS_NUMBER);
    assert_eq!(m.phone_number_id, PHONE_NUMBER_ID);
    assert_eq!(
        m.whatsapp_message_id,
        "wamid.HBgMNDQ3NzAwOTAwMTIzFQIAEhgUM0E1RjQxQzlCN0QyRTZGMDg4QTQA"
    );
    assert_eq!(m.r#type(), MessageType::Text);
    assert_eq!(m.type_name, "text");
    assert_eq!(m.text, "Hi, my order #5521 has not arrived yet");
    assert_eq!(m.sent_at.unwrap().seconds, 1_761_739_200);
    assert_eq!(m.reply_to_whatsapp_id, "");
    assert_eq!(m.media_id, "");
}

#[tokio::test]
async fn b4_5_image_keeps_media_id_and_caption() {
    let mut server = WebhookServer::start().await;
    let body = from_ana(json!([{
        "from": "447700900123", "id": "wamid.IMG", "timestamp": "1761739260", "type": "image",
        "context": { "forwarded": true },
        "image": {
            "caption": "The box arrived damaged", "mime_type": "image/jpeg",
            "sha256": "q0m9k7J3cF2yq1dM8vY8x6o3qKk0b1Zs8c6m2Vn4P9E=", "id": "1200300400500600",
            "url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1200300400500600"
        }
    }]));
    let m = &deliver_ok(&mut server, &body).await.messages[0];
    assert_eq!(m.r#type(), MessageType::Image);
    assert_eq!(m.media_id, "1200300400500600");
    assert_eq!(m.text, "The box arrived damaged");
    // A forward has a context without an id: not a reply.
    assert_eq!(m.reply_to_whatsapp_id, "");
}

#[tokio::test]
async fn b4_5_every_media_kind_location_contacts_and_buttons_are_typed() {
    let mut server = WebhookServer::start().await;
    let msg = |id: &str, ty: &str, obj: serde_json::Value| {
        let mut m =
            json!({ "from": "447700900123", "id": id, "timestamp": "1761739300", "type": ty });
        m.as_object_mut().unwrap().insert(ty.to_owned(), obj);
        m
    };
    let body = from_ana(json!([
        msg(
            "w1",
            "audio",
            json!({ "mime_type": "audio/ogg; codecs=opus", "sha256": "x", "id": "m-audio", "voice": true })
        ),
        msg("w2", "video", json!({ "mime_type": "video/mp4", "id": "m-video", "caption": "look" })),
        msg(
            "w3",
            "document",
            json!({ "mime_type": "application/pdf", "id": "m-doc", "filename": "invoice.pdf" })
        ),
        msg(
            "w4",
            "sticker",
            json!({ "mime_type": "image/webp", "id": "m-sticker", "animated": false })
        ),
        msg(
            "w5",
            "location",
            json!({ "latitude": 51.5074, "longitude": -0.1278, "name": "Office", "address": "1 Main St" })
        ),
        msg(
            "w6",
            "contacts",
            json!([{ "name": { "formatted_name": "Bob Lee" }, "phones": [{ "phone": "+1 555 0100", "type": "CELL" }] }])
        ),
        msg("w7", "button", json!({ "payload": "STOP", "text": "Stop promotions" })),
        msg(
            "w8",
            "interactive",
            json!({ "type": "list_reply", "list_reply": { "id": "opt-2", "title": "Track my order" } })
        ),
    ]));
    let batch = deliver_ok(&mut server, &body).await;
    let got: Vec<(MessageType, &str, &str)> =
        batch.messages.iter().map(|m| (m.r#type(), m.media_id.as_str(), m.text.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (MessageType::Audio, "m-audio", ""),
            (MessageType::Video, "m-video", "look"),
            (MessageType::Document, "m-doc", "invoice.pdf"),
            (MessageType::Sticker, "m-sticker", ""),
            (MessageType::Location, "", "Office · 1 Main St · 51.5074, -0.1278"),
            (MessageType::Contacts, "", "Bob Lee +1 555 0100"),
            (MessageType::Button, "", "Stop promotions"),
            (MessageType::Interactive, "", "Track my order"),
        ]
    );
}

#[tokio::test]
async fn b4_replies_keep_the_quoted_message_id() {
    let mut server = WebhookServer::start().await;
    let body = from_ana(json!([
        {
            "context": { "from": BUSINESS_NUMBER, "id": "wamid.BUSINESS1" },
            "from": "447700900123", "id": "wamid.R1", "timestamp": "1761739320",
            "type": "interactive",
            "interactive": { "type": "button_reply", "button_reply": { "id": "refund-yes", "title": "Yes, refund me" } }
        },
        {
            "context": { "from": BUSINESS_NUMBER, "id": "wamid.BUSINESS2" },
            "from": "447700900123", "id": "wamid.R2", "timestamp": "1761739321",
            "type": "text", "text": { "body": "as I said" }
        }
    ]));
    let batch = deliver_ok(&mut server, &body).await;
    let m = &batch.messages;
    assert_eq!(m[0].r#type(), MessageType::Interactive);
    assert_eq!(m[0].text, "Yes, refund me");
    assert_eq!(m[0].reply_to_whatsapp_id, "wamid.BUSINESS1");
    assert_eq!(m[1].reply_to_whatsapp_id, "wamid.BUSINESS2");
    assert_eq!(m[1].text, "as I said");
}

#[tokio::test]
async fn b4_reaction_points_at_the_message_reacted_to_and_removal_is_kept() {
    let mut server = WebhookServer::start().await;
    let body = from_ana(json!([
        { "from": "447700900123", "id": "wamid.RX1", "timestamp": "1761739499",
          "type": "reaction", "reaction": { "message_id": "wamid.BIZ", "emoji": "\u{1F44D}" } },
        { "from": "447700900123", "id": "wamid.RX2", "timestamp": "1761739500",
          "type": "reaction", "reaction": { "message_id": "wamid.BIZ" } }
    ]));
    let batch = deliver_ok(&mut server, &body).await;
    let m = &batch.messages;
    assert_eq!(
        (m[0].r#type(), m[0].text.as_str(), m[0].reply_to_whatsapp_id.as_str()),
        (MessageType::Reaction, "👍", "wamid.BIZ")
    );
    assert_eq!(
        (m[1].r#type(), m[1].text.as_str(), m[1].reply_to_whatsapp_id.as_str()),
        (MessageType::Reaction, "", "wamid.BIZ")
    );
}

#[tokio::test]
async fn b4_5_unknown_types_are_kept_and_never_block_the_rest() {
    let mut server = WebhookServer::start().await;
    let body = from_ana(json!([
        { "from": "447700900123", "id": "wamid.U1", "timestamp": "1761739560",
          "type": "unsupported", "unsupported": { "type": "poll_creation" },
          "errors": [{ "code": 131051, "title": "Message type unknown", "message": "Message type unknown",
                       "error_data": { "details": "Message type is currently not supported." } }] },
        { "from": "447700900123", "id": "wamid.U2", "timestamp": "1761739561",
          "type": "order", "order": { "catalog_id": "1", "text": "two please", "product_items": [] } },
        { "from": "447700900123", "id": "wamid.U3", "timestamp": "1761739562", "type": "hologram" },
        // A known type whose object is missing (reference §4.4: never assume it is there).
        { "from": "447700900123", "id": "wamid.U4", "timestamp": "1761739563", "type": "image" },
        { "from": "447700900123", "id": "wamid.U5", "timestamp": "1761739564", "type": "text", "text": { "body": "still here" } }
    ]));
    let batch = deliver_ok(&mut server, &body).await;
    let got: Vec<(&str, MessageType, &str, &str)> = batch
        .messages
        .iter()
        .map(|m| {
            (m.whatsapp_message_id.as_str(), m.r#type(), m.type_name.as_str(), m.text.as_str())
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("wamid.U1", MessageType::Unknown, "unsupported:poll_creation", ""),
            ("wamid.U2", MessageType::Unknown, "order", "two please"),
            ("wamid.U3", MessageType::Unknown, "hologram", ""),
            ("wamid.U4", MessageType::Image, "image", ""),
            ("wamid.U5", MessageType::Text, "text", "still here"),
        ]
    );
    assert!(batch.skipped.is_empty());
}

#[tokio::test]
async fn b4_every_entry_change_message_and_status_of_a_batch_is_delivered() {
    let mut server = WebhookServer::start().await;
    let change = |pnid: &str, display: &str, value: serde_json::Value| {
        let mut value = value;
        let obj = value.as_object_mut().unwrap();
        obj.insert("messaging_product".into(), json!("whatsapp"));
        obj.insert(
            "metadata".into(),
            json!({ "display_phone_number": display, "phone_number_id": pnid }),
        );
        json!({ "field": "messages", "value": value })
    };
    let text = |from: &str, id: &str, body: &str| json!({ "from": from, "id": id, "timestamp": "1761739400", "type": "text", "text": { "body": body } });
    let payload = json!({
        "object": "whatsapp_business_account",
        "entry": [
            { "id": "WABA1", "changes": [
                change("PN1", "15550001234", json!({
                    "contacts": [
                        { "profile": { "name": "Ana Souza" }, "wa_id": "447700900123" },
                        { "profile": { "name": "Bruno Lima" }, "wa_id": "5511988887777" }
                    ],
                    "messages": [
                        text("447700900123", "wamid.B1", "hello?"),
                        text("5511988887777", "wamid.B2", "oi"),
                        { "from": "447700900123", "id": "wamid.B3", "timestamp": "1761739401", "type": "audio",
                          "audio": { "mime_type": "audio/ogg; codecs=opus", "sha256": "bW9ja3NoYTI1Ng==", "id": "1200300400500601", "voice": true } }
                    ]
                })),
                change("PN1", "15550001234", json!({
                    "statuses": [
                        { "id": "wamid.OUT1", "status": "read", "timestamp": "1761739402", "recipient_id": "447700900123" },
                        { "id": "wamid.OUT2", "status": "delivered", "timestamp": "1761739403", "recipient_id": "5511988887777" }
                    ]
                }))
            ]},
            { "id": "WABA2", "changes": [
                change("PN2", "15559990000", json!({
                    "contacts": [{ "profile": { "name": "Chen Wei" }, "wa_id": "8613800138000" }],
                    "messages": [text("8613800138000", "wamid.B4", "ni hao")],
                    "statuses": [{ "id": "wamid.OUT3", "status": "sent", "timestamp": "1761739404", "recipient_id": "8613800138000" }]
                })),
                { "field": "account_update", "value": { "event": "VERIFIED_ACCOUNT" } }
            ]}
        ]
    });
    let batch = deliver_ok(&mut server, &serde_json::to_vec(&payload).unwrap()).await;
    let messages: Vec<(&str, &str, &str, &str)> = batch
        .messages
        .iter()
        .map(|m| {
            let (name, phone) = customer(m);
            (m.whatsapp_message_id.as_str(), name, phone, m.phone_number_id.as_str())
        })
        .collect();
    assert_eq!(
        messages,
        vec![
            ("wamid.B1", "Ana Souza", "+447700900123", "PN1"),
            ("wamid.B2", "Bruno Lima", "+5511988887777", "PN1"),
            ("wamid.B3", "Ana Souza", "+447700900123", "PN1"),
            ("wamid.B4", "Chen Wei", "+8613800138000", "PN2"),
        ]
    );
    assert_eq!(batch.messages[3].source_number, "15559990000");
    let statuses: Vec<(&str, DeliveryStatus, &str)> = batch
        .statuses
        .iter()
        .map(|s| (s.whatsapp_message_id.as_str(), s.status, s.phone_number_id.as_str()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("wamid.OUT1", DeliveryStatus::Read, "PN1"),
            ("wamid.OUT2", DeliveryStatus::Delivered, "PN1"),
            ("wamid.OUT3", DeliveryStatus::Sent, "PN2"),
        ]
    );
}

#[tokio::test]
async fn b4_1_statuses_out_of_order_are_all_passed_on_with_their_timestamps() {
    // The forward-only rule is the conversation domain's; the edge passes on
    // every status, in payload order, with WhatsApp's timestamps to order by.
    let mut server = WebhookServer::start().await;
    let st = |status: &str, ts: &str| json!({ "id": "wamid.OUT", "status": status, "timestamp": ts, "recipient_id": "447700900123" });
    let body = envelope(
        json!({ "statuses": [st("read", "1761739350"), st("delivered", "1761739300"), st("sent", "1761739280"), st("played", "1761739360")] }),
    );
    let batch = deliver_ok(&mut server, &body).await;
    let got: Vec<(DeliveryStatus, &str, i64)> = batch
        .statuses
        .iter()
        .map(|s| (s.status, s.status_name.as_str(), s.timestamp.unwrap().seconds))
        .collect();
    assert_eq!(
        got,
        vec![
            (DeliveryStatus::Read, "read", 1_761_739_350),
            (DeliveryStatus::Delivered, "delivered", 1_761_739_300),
            (DeliveryStatus::Sent, "sent", 1_761_739_280),
            (DeliveryStatus::Unspecified, "played", 1_761_739_360),
        ]
    );
    assert!(batch.statuses.iter().all(|s| s.recipient == "+447700900123" && s.failure_code == 0));
}

#[tokio::test]
async fn b4_6_failed_131047_status_keeps_whatsapps_code_and_reason() {
    let mut server = WebhookServer::start().await;
    let body = envelope(json!({ "statuses": [{
        "id": "wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSRTAwMDAwMDAwMDAwMDAwMDAxAA==",
        "status": "failed", "timestamp": "1761912000", "recipient_id": "447700900123",
        "errors": [{
            "code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
            "error_data": { "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number." },
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
        }]
    }]}));
    let batch = deliver_ok(&mut server, &body).await;
    let s = &batch.statuses[0];
    assert_eq!(s.status, DeliveryStatus::Failed);
    assert_eq!(s.failure_code, 131_047);
    assert!(
        s.failure_reason.starts_with(
            "Re-engagement message: Message failed to send because more than 24 hours"
        )
    );
    let record = s.to_record("conv-1", "msg-1");
    assert_eq!(record.conversation_id, "conv-1");
    assert_eq!(record.message_id, "msg-1");
    assert_eq!(record.status(), DeliveryStatus::Failed);
    assert_eq!(record.failure_code, 131_047);
    assert_eq!(record.whatsapp_message_id, s.whatsapp_message_id);
}

#[tokio::test]
async fn b8_2_out_of_band_errors_are_passed_on() {
    let mut server = WebhookServer::start().await;
    let body = envelope(
        json!({ "errors": [{ "code": 130429, "title": "Rate limit hit", "message": "Rate limit hit",
        "error_data": { "details": "Message failed to send because there were too many messages" } }] }),
    );
    let batch = deliver_ok(&mut server, &body).await;
    assert_eq!(batch.errors[0].code, 130_429);
    assert_eq!(batch.errors[0].phone_number_id, PHONE_NUMBER_ID);
}

#[tokio::test]
async fn webhook_answers_200_only_after_the_sink_succeeded() {
    let mut server = WebhookServer::start().await;
    let body = from_ana(
        json!([{ "from": "447700900123", "id": "wamid.S1", "timestamp": "1761739200", "type": "text", "text": { "body": "hi" } }]),
    );
    server.sink.failing.store(true, Ordering::SeqCst);
    let r = server.post(&body, Some(APP_SECRET)).await;
    assert_eq!(r.status(), 503, "a failing sink must make Meta retry");
    assert!(server.drain().is_empty());
    // Meta's retry of the same payload is accepted once the sink is back.
    server.sink.failing.store(false, Ordering::SeqCst);
    let batch = deliver_ok(&mut server, &body).await;
    assert_eq!(batch.messages[0].whatsapp_message_id, "wamid.S1");
}

#[tokio::test]
async fn signed_malformed_json_is_400_and_nothing_delivered() {
    let mut server = WebhookServer::start().await;
    for body in [
        &b"{not json"[..],
        b"[1,2,3]",
        b"\"entry\"",
        b"",
        b"\xff\xfe\x00",
        // B8.3 / issue 11.7: signed JSON of the wrong shape shows in Meta's dashboard.
        br#"{"object":"whatsapp_business_account","entry":"oops"}"#,
        br#"{"entry":{"weird":true}}"#,
        br#"{"entry":[1]}"#,
        br#"{"entry":[{"changes":"x"}]}"#,
        br#"{"object":"whatsapp_business_account"}"#,
    ] {
        let r = server.post(body, Some(APP_SECRET)).await;
        assert_eq!(r.status(), 400, "{body:?}");
    }
    assert!(server.drain().is_empty());
}

#[tokio::test]
async fn signed_payload_with_nothing_for_us_is_200_without_a_delivery() {
    let mut server = WebhookServer::start().await;
    for body in [
        &br#"{"object":"whatsapp_business_account","entry":[]}"#[..],
        br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"account_update","value":{"event":"X"}}]}]}"#,
    ] {
        let r = server.post(body, Some(APP_SECRET)).await;
        assert_eq!(r.status(), 200);
    }
    assert!(server.drain().is_empty());
}

#[tokio::test]
async fn messages_without_id_or_sender_are_skipped_not_fatal() {
    let mut server = WebhookServer::start().await;
    let body = envelope(json!({
        "contacts": [],
        "messages": [
            { "from": "447700900123", "timestamp": "1", "type": "text", "text": { "body": "no id" } },
            { "from": "", "id": "wamid.BSUID", "timestamp": "1", "type": "text", "text": { "body": "username only" } },
            { "from": "447700900123", "id": "wamid.OK", "timestamp": 1761739200, "type": "text", "text": { "body": "numeric timestamp" } }
        ]
    }));
    let batch = deliver_ok(&mut server, &body).await;
    assert_eq!(batch.messages.len(), 1);
    assert_eq!(batch.messages[0].whatsapp_message_id, "wamid.OK");
    assert_eq!(batch.messages[0].sent_at.unwrap().seconds, 1_761_739_200);
    assert_eq!(customer(&batch.messages[0]), ("", "+447700900123"));
    assert_eq!(batch.skipped.len(), 2);
}

#[tokio::test]
async fn body_over_the_limit_is_413_and_nothing_delivered() {
    let mut config = WebhookConfig::new(APP_SECRET, VERIFY_TOKEN);
    config.max_body_bytes = 1024;
    let mut server = WebhookServer::start_with(config).await;
    let big = from_ana(
        json!([{ "from": "447700900123", "id": "wamid.BIG", "timestamp": "1", "type": "text", "text": { "body": "x".repeat(2000) } }]),
    );
    let r = server.post(&big, Some(APP_SECRET)).await;
    assert_eq!(r.status(), 413);
    assert!(server.drain().is_empty());
}

#[tokio::test]
async fn b4_3_concurrent_duplicate_deliveries_each_reach_the_sink_which_dedups() {
    // Meta delivers at least once, sometimes concurrently: the edge passes
    // every delivery on (answering 200 to each only after the sink took it);
    // storing once per WhatsApp message id is the conversation service's job.
    let mut server = WebhookServer::start().await;
    let body = from_ana(
        json!([{ "from": "447700900123", "id": "wamid.DUP", "timestamp": "1761739200", "type": "text", "text": { "body": "twice" } }]),
    );
    let posts = (0..4).map(|_| server.post(&body, Some(APP_SECRET)));
    let statuses: Vec<u16> = futures_util::future::join_all(posts)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses, vec![200; 4]);
    let ids: Vec<String> =
        server.drain().into_iter().map(|b| b.messages[0].whatsapp_message_id.clone()).collect();
    assert_eq!(ids, vec!["wamid.DUP".to_owned(); 4]);
}

/// Issue 11.7: fields longer than WhatsApp's own limits are not stored; the
/// rest of the POST is.
#[tokio::test]
async fn b8_3_fields_over_whatsapps_limits_are_skipped_and_the_rest_delivered() {
    let mut server = WebhookServer::start().await;
    let message = |id: &str, from: &str, body: &str| json!({ "from": from, "id": id, "timestamp": "1761739400", "type": "text", "text": { "body": body } });
    let value = |display: &str, messages: Vec<serde_json::Value>| {
        json!({ "field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": display, "phone_number_id": "pn-1" },
        "messages": messages } })
    };
    let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [
        value(&"5".repeat(5000), vec![message("wamid.long-number", "15551234567", "hi")]),
        value("15550001111", vec![
            message(&"w".repeat(20_000), "15551234567", "hi"),
            message("wamid.long-from", &"1".repeat(300), "hi"),
            message("wamid.long-text", "15551234567", &"x".repeat(4097)),
            message("wamid.ok", "15551234567", &"y".repeat(4096)),
        ]),
    ]}]});
    let batch = deliver_ok(&mut server, body.to_string().as_bytes()).await;
    let ids: Vec<_> = batch.messages.iter().map(|m| m.whatsapp_message_id.as_str()).collect();
    assert_eq!(ids, ["wamid.ok"]);
    assert_eq!(batch.skipped.len(), 4, "{:?}", batch.skipped);
}

/// B4.7: a customer with a username and no number (reference §4.6) is known
/// by the business-scoped user id, named by the profile (or username).
#[tokio::test]
async fn b4_7_a_bsuid_only_customer_is_delivered_keyed_by_the_user_id() {
    let mut server = WebhookServer::start().await;
    let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550001111", "phone_number_id": "pn-1" },
        "contacts": [{ "profile": { "username": "@maria" }, "wa_id": "", "user_id": "US.1234567890ABCDEF" }],
        "messages": [{ "from": "", "from_user_id": "US.1234567890ABCDEF", "id": "wamid.B1", "timestamp": "1761739400", "type": "text", "text": { "body": "hola" } }]
    }}]}]});
    let batch = deliver_ok(&mut server, body.to_string().as_bytes()).await;
    assert_eq!(customer(&batch.messages[0]), ("@maria", "US.1234567890ABCDEF"));
    assert_eq!(whatsapp::inbound::send_to("US.1234567890ABCDEF"), "US.1234567890ABCDEF");
    assert_eq!(whatsapp::inbound::send_to("+1 555 123-4567"), "15551234567");
}
