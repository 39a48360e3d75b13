//! Outside input never panics the parser or the signature check.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Value, json};
use whatsapp::Secret;
use whatsapp::inbound::parse_notification;
use whatsapp::signature;

/// Arbitrary JSON, biased towards the keys the parser looks at.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("entry".to_owned()),
        Just("changes".to_owned()),
        Just("value".to_owned()),
        Just("messages".to_owned()),
        Just("statuses".to_owned()),
        Just("contacts".to_owned()),
        Just("errors".to_owned()),
        Just("metadata".to_owned()),
        Just("field".to_owned()),
        Just("id".to_owned()),
        Just("from".to_owned()),
        Just("type".to_owned()),
        Just("timestamp".to_owned()),
        Just("text".to_owned()),
        Just("body".to_owned()),
        Just("context".to_owned()),
        Just("wa_id".to_owned()),
        Just("profile".to_owned()),
        Just("status".to_owned()),
        Just("code".to_owned()),
        Just("image".to_owned()),
        Just("reaction".to_owned()),
        Just("interactive".to_owned()),
        Just("location".to_owned()),
        Just("latitude".to_owned()),
        ".{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("text".to_owned()),
            Just("failed".to_owned()),
            Just("".to_owned()),
            ".{0,12}"
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 128, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_notification(&bytes);
        let _ = signature::verify(&Secret::new("s"), Some(&bytes), &bytes);
        let _ = signature::escape_non_ascii(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = parse_notification(&bytes);
    }

    #[test]
    fn arbitrary_json_inside_a_real_envelope_never_panics(messages in json_value(), statuses in json_value(), contacts in json_value()) {
        let payload = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [{ "field": "messages",
            "value": { "metadata": { "phone_number_id": "1", "display_phone_number": "2" },
                       "messages": messages, "statuses": statuses, "contacts": contacts } }] }] });
        let batch = parse_notification(&serde_json::to_vec(&payload).unwrap()).unwrap();
        // Every message that came out has an id and a customer number.
        for m in &batch.messages {
            prop_assert!(!m.whatsapp_message_id.is_empty());
            prop_assert!(m.customer.as_ref().unwrap().phone.starts_with('+'));
        }
    }

    #[test]
    fn what_is_signed_verifies_and_one_flipped_byte_does_not(body in prop::collection::vec(any::<u8>(), 0..256), flip in any::<prop::sample::Index>()) {
        let secret = Secret::new("app-secret");
        let header = signature::sign(&secret, &body);
        prop_assert!(signature::verify(&secret, Some(header.as_bytes()), &body).is_ok());
        if !body.is_empty() {
            let mut tampered = body.clone();
            let i = flip.index(body.len());
            tampered[i] ^= 0x01;
            // The fallback may only ever accept a body whose escaped form is the signed one.
            if signature::verify(&secret, Some(header.as_bytes()), &tampered).is_ok() {
                let escaped = signature::escape_non_ascii(&tampered).unwrap();
                prop_assert_eq!(escaped.as_bytes(), &body[..]);
            }
        }
    }
}
