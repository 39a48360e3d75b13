//! The Graph sender against the sandbox over real HTTP, and the sandbox's
//! signed status webhooks into our own webhook router.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use sb_proto::v1::DeliveryStatus;
use serde_json::json;
use whatsapp::graph::{GraphClient, GraphConfig, OutboundText, Retry, RetryPolicy, SendError};
use whatsapp::sandbox::{FailNext, OutboxEntry};
use whatsapp::webhook::WebhookConfig;

fn client(base_url: &str, token: &str) -> GraphClient {
    GraphClient::new(GraphConfig::new(base_url, "v23.0", token)).unwrap()
}

fn text(body: &str) -> OutboundText {
    OutboundText { to: "+447700900123".into(), body: body.into(), reply_to_whatsapp_id: None }
}

async fn outbox(sandbox: &SandboxServer) -> Vec<OutboxEntry> {
    reqwest::get(format!("{}/sandbox/outbox", sandbox.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn fail_next(sandbox: &SandboxServer, body: serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/sandbox/fail-next", sandbox.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn b4_1_send_returns_the_whatsapp_id_and_the_sandbox_records_it() {
    let sandbox = SandboxServer::start(None).await;
    let graph = client(&sandbox.base_url, ACCESS_TOKEN);
    let msg = OutboundText {
        reply_to_whatsapp_id: Some("wamid.CUSTOMER1".into()),
        ..text("Sorry about that, Ana.")
    };
    let receipt = graph.send_text(PHONE_NUMBER_ID, &msg).await.unwrap();
    assert!(receipt.whatsapp_message_id.starts_with("wamid."), "{receipt:?}");
    assert_eq!(receipt.wa_id, "447700900123");

    let sent = outbox(&sandbox).await;
    assert_eq!(sent.len(), 1);
    let e = &sent[0];
    assert_eq!(e.id, receipt.whatsapp_message_id);
    assert_eq!(e.phone_number_id, PHONE_NUMBER_ID);
    assert_eq!(e.to, "447700900123", "sent as bare digits");
    assert_eq!(e.message_type, "text");
    assert_eq!(e.text.as_deref(), Some("Sorry about that, Ana."));
    assert_eq!(e.reply_to.as_deref(), Some("wamid.CUSTOMER1"));
    assert_eq!(e.request["messaging_product"], "whatsapp");
    assert_eq!(e.request["recipient_type"], "individual");

    // Ids are unique per send; DELETE clears the outbox.
    let second = graph.send_text(PHONE_NUMBER_ID, &text("again")).await.unwrap();
    assert_ne!(second.whatsapp_message_id, receipt.whatsapp_message_id);
    assert_eq!(sandbox.handle.outbox().len(), 2);
    let r = reqwest::Client::new()
        .delete(format!("{}/sandbox/outbox", sandbox.base_url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(outbox(&sandbox).await.is_empty());
}

#[tokio::test]
async fn b4_2_text_of_4096_chars_is_sent_and_4097_is_refused_with_metas_error() {
    let sandbox = SandboxServer::start(None).await;
    let graph = client(&sandbox.base_url, ACCESS_TOKEN);
    // Characters, not bytes: 4096 two-byte characters are fine.
    graph.send_text(PHONE_NUMBER_ID, &text(&"é".repeat(4096))).await.unwrap();
    let err = graph.send_text(PHONE_NUMBER_ID, &text(&"a".repeat(4097))).await.unwrap_err();
    match &err {
        SendError::Api { http_status, code, message, .. } => {
            assert_eq!((*http_status, *code), (400, 100));
            assert_eq!(message, "(#100) Param text['body'] must be at most 4096 characters long.");
        }
        other => panic!("expected Meta's error, got {other:?}"),
    }
    assert_eq!(err.retry(), Retry::Permanent);
    assert_eq!(sandbox.handle.outbox().len(), 1, "a refused send is not recorded");
}

#[tokio::test]
async fn wrong_access_token_gets_metas_190_and_the_token_never_shows_in_debug() {
    let sandbox = SandboxServer::start(None).await;
    let graph = client(&sandbox.base_url, "not-the-token");
    let err = graph.send_text(PHONE_NUMBER_ID, &text("hi")).await.unwrap_err();
    assert!(matches!(err, SendError::Api { http_status: 401, code: 190, .. }), "{err:?}");
    assert!(!err.is_retryable());
    let shown = format!("{graph:?} {err:?} {err}");
    assert!(!shown.contains("not-the-token"), "{shown}");
    assert!(sandbox.handle.outbox().is_empty());
}

#[tokio::test]
async fn sandbox_validates_sends_like_meta() {
    let sandbox = SandboxServer::start(None).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v23.0/{PHONE_NUMBER_ID}/messages", sandbox.base_url);
    let cases = [
        (
            json!({ "recipient_type": "individual", "to": "1", "type": "text", "text": { "body": "x" } }),
            "messaging_product",
        ),
        (json!({ "messaging_product": "whatsapp", "type": "text", "text": { "body": "x" } }), "to"),
        (
            json!({ "messaging_product": "whatsapp", "to": "1", "type": "text", "text": {} }),
            "text['body']",
        ),
        (json!({ "messaging_product": "whatsapp", "to": "1", "type": "hologram" }), "type"),
        (json!({ "messaging_product": "whatsapp", "to": "1", "type": "image" }), "image"),
    ];
    for (body, names) in cases {
        let r = http.post(&url).bearer_auth(ACCESS_TOKEN).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], 100, "{body}");
        assert!(e["error"]["message"].as_str().unwrap().contains(names), "{e}");
    }
    // Unknown business number.
    let r = http
        .post(format!("{}/v23.0/999/messages", sandbox.base_url))
        .bearer_auth(ACCESS_TOKEN)
        .json(&json!({ "messaging_product": "whatsapp", "to": "1", "type": "text", "text": { "body": "x" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Mark as read answers like Meta and is not an outbound message.
    let r = http
        .post(&url)
        .bearer_auth(ACCESS_TOKEN)
        .json(
            &json!({ "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.C" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), json!({ "success": true }));
    assert!(sandbox.handle.outbox().is_empty());
}

#[tokio::test]
async fn b4_6_fail_next_131047_is_a_permanent_error() {
    let sandbox = SandboxServer::start(None).await;
    let graph = client(&sandbox.base_url, ACCESS_TOKEN);
    fail_next(&sandbox, json!({ "code": 131047 })).await;
    let err = graph.send_text(PHONE_NUMBER_ID, &text("too late")).await.unwrap_err();
    assert_eq!(err.code(), Some(131_047));
    assert_eq!(err.retry(), Retry::Permanent);
    assert!(err.reason().contains("24 hours"), "{}", err.reason());
    assert_eq!(RetryPolicy::default().delay_after(&err, 0, 0.5), None);
    // Only the next send fails.
    graph.send_text(PHONE_NUMBER_ID, &text("template-time")).await.unwrap();
    assert_eq!(sandbox.handle.outbox().len(), 1);
}

#[tokio::test]
async fn throughput_130429_and_pair_rate_131056_are_retryable_and_a_retry_succeeds() {
    let sandbox = SandboxServer::start(None).await;
    let graph = client(&sandbox.base_url, ACCESS_TOKEN);
    let policy = RetryPolicy::default();
    for code in [130429, 131056] {
        fail_next(&sandbox, json!({ "code": code })).await;
        let err = graph.send_text(PHONE_NUMBER_ID, &text("busy")).await.unwrap_err();
        assert_eq!(err.code(), Some(code));
        assert_eq!(err.retry(), Retry::Retryable);
        assert!(policy.delay_after(&err, 0, 0.5).is_some());
        // The caller's retry (after the policy's delay, elided here) goes through.
        graph.send_text(PHONE_NUMBER_ID, &text("busy")).await.unwrap();
    }
    // Server trouble without Meta's body is retryable too.
    fail_next(&sandbox, json!({ "code": 131000, "http_status": 500 })).await;
    assert!(graph.send_text(PHONE_NUMBER_ID, &text("x")).await.unwrap_err().is_retryable());
}

#[tokio::test]
async fn unreachable_graph_is_a_retryable_network_error() {
    // Bind then drop a listener: nothing answers on that port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let graph = client(&format!("http://127.0.0.1:{port}"), ACCESS_TOKEN);
    let err = graph.send_text(PHONE_NUMBER_ID, &text("x")).await.unwrap_err();
    assert!(matches!(err, SendError::Network(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn b4_1_sandbox_posts_signed_sent_delivered_read_that_our_webhook_accepts() {
    let mut webhook = WebhookServer::start().await;
    let sandbox = SandboxServer::start(Some(webhook.url())).await;
    let mut attempts = sandbox.handle.subscribe_webhook_attempts();
    let graph = client(&sandbox.base_url, ACCESS_TOKEN);
    let receipt = graph.send_text(PHONE_NUMBER_ID, &text("on its way")).await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..3 {
        // Each status is its own signed delivery; our router verified it (or it would not be here).
        let batch = webhook.next().await;
        assert!(batch.messages.is_empty());
        for s in batch.statuses {
            assert_eq!(s.whatsapp_message_id, receipt.whatsapp_message_id);
            assert_eq!(s.phone_number_id, PHONE_NUMBER_ID);
            assert_eq!(s.business_number, BUSINESS_NUMBER);
            assert_eq!(s.recipient, "+447700900123");
            assert!(s.timestamp.is_some());
            seen.push(s.status);
        }
    }
    assert_eq!(seen, vec![DeliveryStatus::Sent, DeliveryStatus::Delivered, DeliveryStatus::Read]);
    // The sandbox's own log agrees (each attempt is logged once its POST returned).
    let mut log = Vec::new();
    while log.len() < 3 {
        let a = tokio::time::timeout(CALLBACK_TIMEOUT, attempts.recv()).await.unwrap().unwrap();
        log.push((a.status, a.delivered, a.attempt));
    }
    assert_eq!(
        log,
        vec![("sent".into(), true, 1), ("delivered".into(), true, 1), ("read".into(), true, 1)]
    );
    let listed: Vec<whatsapp::sandbox::WebhookAttempt> =
        reqwest::get(format!("{}/sandbox/webhooks", sandbox.base_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(listed.len(), 3);
}

#[tokio::test]
async fn b4_6_async_131047_arrives_as_a_signed_failed_status() {
    let mut webhook = WebhookServer::start().await;
    let sandbox = SandboxServer::start(Some(webhook.url())).await;
    let graph = client(&sandbox.base_url, ACCESS_TOKEN);
    sandbox.handle.fail_next(FailNext { code: 131047, http_status: None, asynchronous: true });
    let receipt = graph.send_text(PHONE_NUMBER_ID, &text("accepted, then failed")).await.unwrap();
    let batch = webhook.next().await;
    let s = &batch.statuses[0];
    assert_eq!(s.whatsapp_message_id, receipt.whatsapp_message_id);
    assert_eq!(s.status, DeliveryStatus::Failed);
    assert_eq!(s.failure_code, 131_047);
    assert!(s.failure_reason.starts_with("Re-engagement message"));
}

#[tokio::test]
async fn status_webhooks_signed_with_another_secret_are_refused_by_our_webhook() {
    // The sandbox signs with APP_SECRET; a webhook configured with another
    // secret refuses every status, the sandbox retries, gives up, and keeps
    // answering sends.
    let mut webhook =
        WebhookServer::start_with(WebhookConfig::new("rotated-secret", VERIFY_TOKEN)).await;
    let sandbox = SandboxServer::start(Some(webhook.url())).await;
    let mut attempts = sandbox.handle.subscribe_webhook_attempts();
    let graph = client(&sandbox.base_url, ACCESS_TOKEN);
    graph.send_text(PHONE_NUMBER_ID, &text("x")).await.unwrap();
    let expected = 3 * whatsapp::sandbox::STATUS_WEBHOOK_ATTEMPTS as usize;
    let mut seen = Vec::new();
    while seen.len() < expected {
        let a = tokio::time::timeout(CALLBACK_TIMEOUT, attempts.recv()).await.unwrap().unwrap();
        assert_eq!((a.http_status, a.delivered), (Some(401), false), "{a:?}");
        seen.push(a.status);
    }
    assert_eq!(seen.iter().filter(|s| *s == "read").count(), 3);
    graph.send_text(PHONE_NUMBER_ID, &text("y")).await.unwrap();
    assert!(webhook.drain().is_empty());
}

#[tokio::test]
async fn send_text_retrying_rides_out_throttling_and_stops_on_permanent_errors() {
    let sandbox = SandboxServer::start(None).await;
    let graph = client(&sandbox.base_url, ACCESS_TOKEN);
    let policy = RetryPolicy {
        base: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        max_retries: 3,
    };
    sandbox.handle.fail_next(FailNext { code: 130429, http_status: None, asynchronous: false });
    sandbox.handle.fail_next(FailNext { code: 131000, http_status: None, asynchronous: false });
    let receipt = graph
        .send_text_retrying(PHONE_NUMBER_ID, &text("third time lucky"), &policy, || 0.5)
        .await
        .unwrap();
    assert_eq!(sandbox.handle.outbox()[0].id, receipt.whatsapp_message_id);

    sandbox.handle.fail_next(FailNext { code: 131026, http_status: None, asynchronous: false });
    sandbox.handle.fail_next(FailNext { code: 130429, http_status: None, asynchronous: false });
    let err = graph
        .send_text_retrying(PHONE_NUMBER_ID, &text("undeliverable"), &policy, || 0.5)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(131_026), "a permanent error is not retried");
    // The queued 130429 is still there: it was never reached.
    assert_eq!(
        graph.send_text(PHONE_NUMBER_ID, &text("z")).await.unwrap_err().code(),
        Some(130_429)
    );

    for _ in 0..4 {
        sandbox.handle.fail_next(FailNext { code: 130429, http_status: None, asynchronous: false });
    }
    let err = graph
        .send_text_retrying(PHONE_NUMBER_ID, &text("never"), &policy, || 0.5)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(130_429), "gives up after max_retries");
    assert_eq!(sandbox.handle.outbox().len(), 1);
}

#[tokio::test]
async fn simulated_customer_message_goes_through_the_real_webhook() {
    let mut webhook = WebhookServer::start().await;
    let msg = whatsapp::simulate::CustomerText {
        name: "Maria Lopez".into(),
        phone: "15551234567".into(),
        to: whatsapp::simulate::BusinessNumber {
            phone_number_id: PHONE_NUMBER_ID.into(),
            display_phone_number: BUSINESS_NUMBER.into(),
        },
        text: "Hello".into(),
        whatsapp_message_id: whatsapp::simulate::new_wamid("SIM"),
        timestamp: 1_761_739_200,
        reply_to_whatsapp_id: None,
    };
    whatsapp::simulate::customer_text(&webhook.url(), &whatsapp::Secret::new(APP_SECRET), &msg)
        .await
        .unwrap();
    let batch = webhook.next().await;
    let m = &batch.messages[0];
    let c = m.customer.as_ref().unwrap();
    assert_eq!((c.name.as_str(), c.phone.as_str()), ("Maria Lopez", "+15551234567"));
    assert_eq!(m.source_number, BUSINESS_NUMBER);
    assert_eq!(m.text, "Hello");
    assert_eq!(m.whatsapp_message_id, msg.whatsapp_message_id);

    // With the wrong secret the webhook refuses it, and the caller is told.
    let err =
        whatsapp::simulate::customer_text(&webhook.url(), &whatsapp::Secret::new("nope"), &msg)
            .await
            .unwrap_err();
    assert!(matches!(err, whatsapp::simulate::PostError::Refused { status: 401, .. }), "{err:?}");
}
