//! Chat requests: any bytes must parse to a request or a typed error, never
//! panic; ids echoed back must be valid JSON; every reply built from a
//! parsed request must be valid JSON.

use crate::proto::chat::{self as api, Request};

/// Checks one input; panics when a property is broken.
pub fn check(data: &[u8]) {
    let (id, req) = api::parse(data, 1024);
    if let Some(id) = id {
        let reply = api::pong(Some(id));
        serde_json::from_slice::<serde_json::Value>(&reply)
            .expect("pong with the echoed id is JSON");
    }
    match req {
        Ok(Request::Publish { room, data }) => {
            assert!(data.len() <= 1024);
            let compact = api::minify(data);
            let msg = api::message(&room, 1, "u", 0, api::Data::Json(compact.as_bytes()));
            let v: serde_json::Value = serde_json::from_slice(&msg).expect("message is JSON");
            let original: serde_json::Value = serde_json::from_str(data).expect("data was JSON");
            assert_eq!(v["data"], original, "minify keeps the value");
        }
        Ok(Request::Join { room, .. })
        | Ok(Request::Leave { room })
        | Ok(Request::Members { room, .. }) => {
            assert!(crate::proto::chat::valid_room_name(room.as_bytes()));
        }
        Ok(_) => {}
        Err(e) => {
            let reply = api::error(id, e.code.as_str(), &e.message);
            serde_json::from_slice::<serde_json::Value>(&reply).expect("error reply is JSON");
        }
    }
    let _ = api::message("r", 1, "u", 0, api::Data::Raw(data));
}
