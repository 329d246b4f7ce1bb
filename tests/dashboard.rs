//! The admin port's dashboard, and the clock in `/stats` it computes
//! rates against.

mod common;

use common::{http_get, Client, Server};

#[tokio::test]
async fn the_dashboard_is_on_the_admin_port_and_stats_has_a_clock() {
    let server = Server::start(&[]);
    let (status, html) = http_get(server.admin, "/").await;
    assert_eq!(status, 200);
    assert!(html.contains("/dashboard.js"), "{html}");
    let (status, js) = http_get(server.admin, "/dashboard.js").await;
    assert_eq!(status, 200);
    assert!(js.contains("/stats"));

    let first = server.stats().await["uptime_ms"].as_u64().unwrap();
    let mut c = Client::connect(&server, "ann").await;
    c.join("lobby").await;
    let stats = server.stats().await;
    let second = stats["uptime_ms"].as_u64().unwrap();
    assert!(second >= first, "{first} then {second}");
    assert_eq!(second / 1000, stats["uptime_s"].as_u64().unwrap());
}
